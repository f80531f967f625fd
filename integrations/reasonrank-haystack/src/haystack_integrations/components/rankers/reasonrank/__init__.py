"""Haystack ranker component of reasonrank: ``from haystack_integrations.components.rankers.reasonrank import
ReasoningRanker``."""

from .ranker import ReasoningRanker

__all__ = ["ReasoningRanker"]
