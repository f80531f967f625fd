"""IR measures of a run against qrels, computed with ``ir-measures`` (``bench`` extra)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from .._deps import require

__all__ = ["DEFAULT_MEASURES", "evaluate"]

logger = logging.getLogger(__name__)

DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100")


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             measures: Sequence[str] = DEFAULT_MEASURES) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a run with ``ir-measures`` (trec_eval semantics: graded gains, relevance >= 1 is relevant).

    Every query of ``qrels`` that has at least one relevant document is evaluated; a query the run misses
    scores 0 on every measure (rather than being silently skipped). The aggregate is the mean over
    those queries.

    Args:
        qrels: ``{query_id: {doc_id: relevance}}``.
        run: ``{query_id: {doc_id: score}}``.
        measures: ir-measures names, e.g. ``"nDCG@10"``, ``"RR@10"``, ``"R@100"``, ``"AP"``, ``"P@5"``.

    Returns:
        ``(aggregate, per_query)``: ``{measure: mean}`` and ``{query_id: {measure: value}}``.

    Example:
        >>> agg, per_q = evaluate({"q": {"a": 1}}, {"q": {"b": 2.0, "a": 1.0}}, ["RR@10"])
        >>> agg["RR@10"], per_q["q"]["RR@10"]
        (0.5, 0.5)
    """
    irm = require("ir_measures", "bench", purpose="evaluation measures")
    if not measures:
        raise ValueError("measures is empty; pass names such as ('nDCG@10', 'RR@10')")
    try:
        parsed = [irm.parse_measure(m) for m in measures]
    except Exception as exc:  # ir_measures raises several types for bad names
        raise ValueError(f"unknown measure in {list(measures)} ({exc}); use ir-measures names such as "
                         "'nDCG@10', 'RR@10', 'R@100', 'AP'") from exc
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged:
        raise ValueError("qrels have no relevant (relevance >= 1) judgment; nothing can be evaluated")
    dropped = len(qrels) - len(judged)
    if dropped:
        logger.info("%d queries without any relevant document are not evaluated", dropped)
    clean_run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in judged and docs}
    per_query: dict[str, dict[str, float]] = {q: {m: 0.0 for m in measures} for q in judged}
    names = dict(zip(map(str, parsed), measures))
    if clean_run:
        for metric in irm.iter_calc(parsed, judged, clean_run):
            per_query[metric.query_id][names[str(metric.measure)]] = float(metric.value)
    missing = len(judged) - len(clean_run)
    if missing:
        logger.warning("%d of %d judged queries have no documents in the run; they score 0", missing, len(judged))
    agg = {m: math.fsum(v[m] for v in per_query.values()) / len(per_query) for m in measures}
    return agg, per_query
