"""Reranking a first-stage run with a :class:`~reasonrank.ReasoningReranker`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..schema import RerankResult
from .collections import Collection, Run

if TYPE_CHECKING:  # pragma: no cover
    from ..reranker import ReasoningReranker

__all__ = ["rerank_run"]

logger = logging.getLogger(__name__)

# Reranker ties are broken by first-stage order, like ReasoningReranker.rank: this offset per first-stage
# position is far below any score difference a model produces, but makes the ordering (and trec_eval's,
# which otherwise breaks ties by doc id) deterministic.
_TIE_EPS = 1e-9


def _progress(it: Iterable[Any], *, enabled: bool, total: int | None = None, desc: str = "") -> Iterable[Any]:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, disable=not logger.isEnabledFor(logging.WARNING))


def _ordered(docs: Mapping[str, float]) -> list[str]:
    return [d for d, _ in sorted(docs.items(), key=lambda kv: -kv[1])]


def rerank_run(reranker: ReasoningReranker, collection: Collection, first_stage: Mapping[str, Mapping[str, float]],
               *, k: int = 100, progress: bool = True,
               results: dict[str, list[RerankResult]] | None = None) -> Run:
    """Rerank the top ``k`` documents of each query of ``first_stage`` with :meth:`ReasoningReranker.score`.

    The reranked documents are ordered by reranker score (ties keep first-stage order); documents the
    backend failed on follow them; documents of the first stage beyond ``k`` keep their order *below* all
    reranked ones (negative scores), so the run stays comparable with the first stage at any depth.

    Args:
        reranker: The reranker.
        collection: Supplies the query and document texts.
        first_stage: The run to rerank (e.g. from :func:`bm25_search`).
        k: Rerank depth.
        progress: Show a progress bar over queries.
        results: If a dict is given, it receives ``query_id -> [RerankResult, ...]`` (in first-stage order),
            with labels and explanations, e.g. to save them next to the run.

    Returns:
        The reranked run.

    Raises:
        KeyError: a query or document of ``first_stage`` is not in the collection (the message names it).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    out: Run = {}
    for q in _progress(list(first_stage), enabled=progress, desc=f"rerank {collection.name}"):
        if q not in collection.queries:
            raise KeyError(f"query {q!r} of the first-stage run is not in collection {collection.name!r}; "
                           "rerank a run produced on the same collection")
        ranked = _ordered(first_stage[q])
        head, tail = ranked[:k], ranked[k:]
        missing = [d for d in head if d not in collection.corpus]
        if missing:
            raise KeyError(f"document {missing[0]!r} (query {q!r}) is not in the corpus of {collection.name!r}; "
                           "rerank a run produced on the same collection")
        scored = reranker.score(collection.queries[q], [collection.corpus[d] for d in head]) if head else []
        if results is not None:
            results[q] = scored
        # documents the backend failed on (RerankResult.error set) go below the judged ones, above the tail
        run_q = {d: (-0.5 if getattr(r, "error", None) else r.score) - _TIE_EPS * pos
                 for pos, (d, r) in enumerate(zip(head, scored))}
        run_q.update({d: -1.0 - pos for pos, d in enumerate(tail)})
        out[q] = run_q
    return out
