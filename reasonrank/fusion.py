"""Score fusion: combine the reranker's score with the first stage's score of the same candidate list.

A small reranker and a first stage make different mistakes; a weighted sum of the two, each min-max
normalised over one query's candidates, is often better than either (tune the weight on a dev fold:
:func:`tune_fusion_weight`). :class:`~reasonrank.ReasoningReranker` applies it when constructed with
``fusion_weight`` and given documents that carry a first-stage score (``Document.first_stage_score``, or a
``"score"`` / ``"first_stage_score"`` key of a dict document); results keep both scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["fuse_scores", "list_scores", "minmax", "tune_fusion_weight"]


def minmax(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1] over the list; a constant list maps to all 0.5.

    Example:
        >>> minmax([2.0, 4.0, 3.0])
        [0.0, 1.0, 0.5]
        >>> minmax([7.0, 7.0])
        [0.5, 0.5]
    """
    vals = [float(v) for v in values]
    if any(not math.isfinite(v) for v in vals):
        raise ValueError("first-stage scores must be finite numbers; got " + repr([v for v in vals if not math.isfinite(v)][:3]))
    if not vals:
        return []
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return [0.5] * len(vals)
    return [(v - lo) / (hi - lo) for v in vals]


def fuse_scores(model: Sequence[float], first_stage: Sequence[float], weight: float) -> list[float]:
    """``(1 - weight) * model + weight * minmax(first_stage)``; model scores are already in [0, 1].

    Example:
        >>> fuse_scores([0.9, 0.1], [10.0, 20.0], 0.0)
        [0.9, 0.1]
        >>> [round(x, 2) for x in fuse_scores([0.9, 0.1], [10.0, 20.0], 0.5)]
        [0.45, 0.55]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight must be in [0, 1], got {weight}")
    if len(model) != len(first_stage):
        raise ValueError(f"{len(model)} model scores but {len(first_stage)} first-stage scores")
    return [(1.0 - weight) * m + weight * f for m, f in zip(model, minmax(first_stage))]


def list_scores(label_scores: Sequence[float], query_logprobs: Sequence[float | None] | None,
                first_stage: Sequence[float] | None, *, likelihood_weight: float = 0.0,
                fusion_weight: float = 0.0) -> tuple[list[float], list[float]]:
    """One query's candidate list: (model scores, final scores).

    The model score is ``(1 - likelihood_weight) * label score + likelihood_weight * minmax(query_logprobs)``
    (the query likelihood min-max normalised over the list); the final score fuses it with the first stage
    (:func:`fuse_scores`) when ``first_stage`` is given. Both weights are in [0, 1]; 0 leaves a part out.
    A None query log-probability (a document that failed) takes the list's lowest.

    Example:
        >>> list_scores([0.2, 0.4], [-3.0, -1.0], None, likelihood_weight=0.5)
        ([0.1, 0.7], [0.1, 0.7])
    """
    model = [float(s) for s in label_scores]
    if likelihood_weight:
        if not 0.0 <= likelihood_weight <= 1.0:
            raise ValueError(f"likelihood weight must be in [0, 1], got {likelihood_weight}")
        if query_logprobs is None or len(query_logprobs) != len(model):
            raise ValueError("likelihood_weight needs one query log-probability per candidate")
        known = [q for q in query_logprobs if q is not None]
        filled = [min(known, default=0.0) if q is None else q for q in query_logprobs]
        model = [(1.0 - likelihood_weight) * m + likelihood_weight * q for m, q in zip(model, minmax(filled))]
    final = fuse_scores(model, first_stage, fusion_weight) if first_stage is not None else model
    return model, final


GRID: tuple[float, ...] = tuple(k / 10 for k in range(11))
"""Fusion weights tried by :func:`tune_fusion_weight`: 0, 0.1, ..., 1."""


def tune_fusion_weight(qrels: Mapping[str, Mapping[str, int]], first_stage: Mapping[str, Mapping[str, float]],
                       model: Mapping[str, Mapping[str, float]], *, measure: str = "nDCG@10",
                       grid: Sequence[float] = GRID) -> tuple[float, dict[float, float]]:
    """The fusion weight with the best ``measure`` on a dev fold, and the measure at every grid point.

    ``model`` holds the reranker's scores of the reranked candidates (a subset of each first-stage list);
    only those candidates are fused and ranked.
    """
    from .evaluation import evaluate

    table: dict[float, float] = {}
    for w in grid:
        run = {}
        for q, docs in model.items():
            ids = list(docs)
            fused = fuse_scores([docs[d] for d in ids], [first_stage[q][d] for d in ids], w)
            run[q] = dict(zip(ids, fused))
        table[w] = evaluate({q: qrels[q] for q in run if q in qrels}, run, [measure])[0][measure]
    best = max(table, key=lambda w: (table[w], -abs(w - 0.5)))
    return best, table
