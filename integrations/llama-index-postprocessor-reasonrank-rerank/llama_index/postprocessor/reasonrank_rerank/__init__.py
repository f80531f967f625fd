"""LlamaIndex node postprocessor of reasonrank: ``from llama_index.postprocessor.reasonrank_rerank import
ReasoningRerank``."""

from .base import EMPTY_KEY, METADATA_KEYS, ReasoningRerank

__all__ = ["ReasoningRerank", "METADATA_KEYS", "EMPTY_KEY"]
