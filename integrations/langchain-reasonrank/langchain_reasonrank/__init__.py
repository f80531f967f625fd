"""LangChain integration of reasonrank: a document compressor that reranks with a reasoning reranker.

The class shares its name with ``reasonrank.ReasoningReranker``; alias it where both
are used::

    from reasonrank import ReasoningReranker
    from langchain_reasonrank import ReasoningReranker as ReasoningRerankCompressor
"""

from .compressor import EMPTY_KEY, ReasoningReranker

__all__ = ["ReasoningReranker", "EMPTY_KEY"]
