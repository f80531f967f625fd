"""``eval``: nDCG@10 (or other ir-measures) of a checkpoint reranking a first stage on a collection.

Uses the core's evaluation module (:mod:`reasonrank.evaluation`: BEIR/BRIGHT loading, BM25 first stage,
reranking with :class:`reasonrank.ReasoningReranker`, measures with ``ir-measures``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.evaluation import bm25_search, evaluate, load_beir, load_bright, read_trec_run, rerank_run
from reasonrank.metadata import model_defaults

from .config import EvalConfig
from .modeling import read_meta, resolve_train_model

__all__ = ["EvalResult", "run_eval"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """Aggregate measures of the first stage and of the reranked run."""

    model: str
    collection: str
    queries: int
    first_stage: dict[str, float]
    reranked: dict[str, float]
    mode: str
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "collection": self.collection, "queries": self.queries, "mode": self.mode,
                "first_stage": self.first_stage, "reranked": self.reranked}


def run_eval(cfg: EvalConfig, *, reranker: Any = None) -> EvalResult:
    """Evaluate; ``reranker`` (optional) replaces the one built from ``cfg.model``."""
    from reasonrank import ReasoningReranker

    if cfg.collection_format == "bright":
        col = load_bright(cfg.collection or "", cfg.bright_domain or "")
    else:
        col = load_beir(cfg.collection or "", cfg.split)
    if cfg.max_queries:
        col = col.subset(cfg.max_queries)
    first = bm25_search(col, k=cfg.k) if cfg.first_stage == "bm25" else \
        {q: docs for q, docs in read_trec_run(cfg.first_stage).items() if q in col.queries}
    model_path = resolve_train_model(cfg.model or "")
    meta = read_meta(model_path) if Path(model_path).is_dir() else {}
    defaults = model_defaults(meta, mode=cfg.mode, label_scale=cfg.label_scale or None)
    mode, scale = defaults.mode, defaults.label_scale
    own = reranker is None
    if own:
        reranker = ReasoningReranker(model_path, backend=cfg.backend, mode=mode, label_scale=scale,
                                     batch_size=cfg.batch_size, max_doc_tokens=cfg.max_doc_tokens,
                                     max_new_tokens=cfg.max_new_tokens, **dict(cfg.backend_options))
    try:
        reranked = rerank_run(reranker, col, first, k=cfg.k, progress=cfg.progress)
    finally:
        if own:
            reranker.close()
    base, _ = evaluate(col.qrels, first, cfg.measures)
    agg, per_q = evaluate(col.qrels, reranked, cfg.measures)
    result = EvalResult(model=cfg.model or "", collection=col.name, queries=len(col.queries), first_stage=base,
                        reranked=agg, mode=mode, per_query=per_q)
    logger.info("eval %s on %s: %s (first stage %s)", cfg.model, col.name, agg, base)
    if cfg.output:
        out = Path(cfg.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
    return result
