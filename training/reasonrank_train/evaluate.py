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

from .config import MODES, ConfigError, _h, check_label_scale
from .modeling import read_meta, resolve_train_model

__all__ = ["EvalConfig", "EvalResult", "run_eval"]

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """``eval``: nDCG@10 (and more) of a checkpoint reranking a first stage on a collection."""

    model: str | None = _h("Checkpoint to evaluate (exported or stage output directory).", None)
    collection: str | None = _h("Collection folder (BEIR layout, or a BRIGHT copy with collection_format: "
                                "bright).", None)
    collection_format: str = _h("'beir' or 'bright'.", "beir")
    bright_domain: str | None = _h("BRIGHT domain (collection_format: bright).", None)
    split: str = _h("qrels split (BEIR).", "test")
    mode: str | None = _h("Reranker mode; None: the checkpoint's recorded mode (reasonrank.json) or 'reasoning'.",
                          None)
    label_scale: Any = _h("Label scale; None: the checkpoint's recorded scale or [0, 1, 2].", None)  # noqa: RUF009 (a field factory)
    first_stage: str = _h("First-stage retrieval: 'bm25' or a TREC run file path.", "bm25")
    k: int = _h("Rerank depth (documents of the first stage per query).", 20)
    max_queries: int | None = _h("Evaluate at most this many queries (None: all).", None)
    measures: Any = _h("ir-measures names.", ["nDCG@10"])  # noqa: RUF009 (a field factory)
    backend: str = _h("reasonrank backend for the checkpoint.", "transformers")
    backend_options: dict = _h("Extra reranker/backend options (device, dtype, ...).", {})  # noqa: RUF009 (a field factory)
    batch_size: int = _h("Documents per batch.", 8)
    max_doc_tokens: int = _h("Documents are cut to this many tokens.", 512)
    max_new_tokens: int = _h("Reasoning mode: generation budget.", 256)
    output: str | None = _h("Write metrics (json) here.", None)
    progress: bool = _h("Show a progress bar.", True)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is not set; set `model:` to the checkpoint directory to evaluate")
        if not self.collection or not Path(self.collection).is_dir():
            raise ConfigError(f"collection folder {self.collection!r} does not exist; set `collection:` to a "
                              "BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
        if self.collection_format not in ("beir", "bright"):
            raise ConfigError(f"collection_format must be 'beir' or 'bright', got {self.collection_format!r}")
        if self.collection_format == "bright" and not self.bright_domain:
            raise ConfigError("collection_format: bright needs `bright_domain:` (e.g. biology)")
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"mode must be 'reasoning', 'direct' or null, got {self.mode!r}")
        if self.label_scale is not None:
            self.label_scale = check_label_scale(self.label_scale)
        if self.first_stage != "bm25" and not Path(self.first_stage).is_file():
            raise ConfigError(f"first_stage must be 'bm25' or an existing TREC run file, got {self.first_stage!r}")
        if isinstance(self.measures, str):
            self.measures = [self.measures]
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"k must be a positive int, got {self.k!r}")


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
