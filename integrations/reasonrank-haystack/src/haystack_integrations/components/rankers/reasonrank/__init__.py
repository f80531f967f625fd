"""Haystack ranker component of reasonrank: ``from haystack_integrations.components.rankers.reasonrank import
ReasoningRanker``."""

from .ranker import EMPTY_KEY, ReasoningRanker

__all__ = ["ReasoningRanker", "EMPTY_KEY"]
