"""reasonrank: a pluggable reasoning reranker (InteRank / ProRank) for retrieval pipelines.

Example:
    >>> from reasonrank import ReasoningReranker
    >>> rr = ReasoningReranker("smollm2-local", mode="reasoning")          # doctest: +SKIP
    >>> for r in rr.rank("how do vaccines work", docs, top_k=3):          # doctest: +SKIP
    ...     print(r.rank, round(r.score, 3), r.label, r.explanation)
"""

from __future__ import annotations

from ._deps import MissingDependencyError
from .backends import Backend, available_backends, register_backend
from .models import DEFAULT_MODEL, LOCAL_SMOLLM2
from .parsing import Judgment, ParseError, parse_judgment
from .reranker import ReasoningReranker
from .schema import Document, RerankResult, RerankStats
from .templates import DIRECT_TEMPLATE, REASONING_TEMPLATE, PromptTemplate, TemplateError

__version__ = "0.1.0"

__all__ = ["ReasoningReranker", "RerankResult", "RerankStats", "Document", "PromptTemplate", "REASONING_TEMPLATE",
           "DIRECT_TEMPLATE", "TemplateError", "ParseError", "Judgment", "parse_judgment", "Backend",
           "register_backend", "available_backends", "MissingDependencyError", "DEFAULT_MODEL", "LOCAL_SMOLLM2",
           "__version__"]
