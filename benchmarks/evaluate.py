#!/usr/bin/env python
"""Evaluate a reasonrank reranker on a BEIR- or BRIGHT-layout collection: first stage vs reranked.

Retrieves a first stage (BM25 via ``bm25s``, a sentence-transformers bi-encoder, or a TREC run file),
reranks the top ``--rerank-k`` with :class:`reasonrank.ReasoningReranker`, and prints nDCG@10 / MRR@10 /
Recall@k of both side by side. Writes to ``--out``: ``first_stage.trec``, ``reranked.trec``, ``qrels.txt``,
``per_query.csv`` (every query, both systems), ``judgments.jsonl`` (label, score and explanation of every
reranked document) and ``summary.json`` (configuration, machine, timings, aggregates).

Examples::

    # smoke run on the bundled sample (local SmolLM2, CPU, ~1 minute in direct mode)
    python benchmarks/evaluate.py --collection benchmarks/data/sample-beir --model smollm2-local --mode direct

    # a BEIR dataset downloaded to a local folder (e.g. scifact), reasoning mode on a GPU
    python benchmarks/evaluate.py --collection data/scifact --model Qwen/Qwen2.5-3B-Instruct \
        --mode reasoning --k 100 --rerank-k 100 --device cuda --batch-size 32 --out runs/scifact

    # one BRIGHT domain from a local copy of the xlangai/BRIGHT dataset repository
    python benchmarks/evaluate.py --collection data/BRIGHT --layout bright --domain biology --rerank-k 100
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from reasonrank import ReasoningReranker
from reasonrank.evaluation import (
    DEFAULT_MEASURES,
    Collection,
    bm25_search,
    dense_search,
    evaluate,
    load_beir,
    load_bright,
    read_trec_run,
    rerank_run,
    write_qrels,
    write_trec_run,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--collection", required=True, type=Path, help="collection folder")
    p.add_argument("--layout", choices=("beir", "bright"), default="beir")
    p.add_argument("--split", default="test", help="BEIR qrels split (qrels/<split>.tsv)")
    p.add_argument("--domain", help="BRIGHT domain, e.g. biology (required with --layout bright)")
    p.add_argument("--long-documents", action="store_true", help="BRIGHT: whole web pages (long_documents)")
    p.add_argument("--max-queries", type=int, help="evaluate only the first N queries (sorted ids)")
    p.add_argument("--first-stage", choices=("bm25", "dense", "run"), default="bm25")
    p.add_argument("--first-stage-run", type=Path, help="TREC run file to rerank (with --first-stage run)")
    p.add_argument("--dense-model", default="sentence-transformers/all-MiniLM-L6-v2",
                   help="sentence-transformers model id or folder (with --first-stage dense)")
    p.add_argument("--k", type=int, default=100, help="first-stage depth (documents per query)")
    p.add_argument("--rerank-k", type=int, help="documents reranked per query (default: --k)")
    p.add_argument("--model", default="smollm2-local", help="reranker model (hub id, folder, .gguf, alias)")
    p.add_argument("--backend", default="transformers", help="transformers | vllm | openai")
    p.add_argument("--mode", choices=("direct", "reasoning"), default="direct")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-doc-tokens", type=int, default=512)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--device", help="cuda, cpu, mps (auto when omitted)")
    p.add_argument("--dtype", help="bfloat16, float16, float32 (auto when omitted)")
    p.add_argument("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--measures", default=",".join(DEFAULT_MEASURES), help="comma-separated ir-measures names")
    p.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="INFO logging")
    args = p.parse_args(argv)
    if args.layout == "bright" and not args.domain:
        p.error("--layout bright needs --domain (e.g. --domain biology)")
    if args.first_stage == "run" and not args.first_stage_run:
        p.error("--first-stage run needs --first-stage-run PATH (a TREC run file)")
    if args.k < 1 or (args.rerank_k is not None and args.rerank_k < 1):
        p.error("--k and --rerank-k must be >= 1")
    return args


def load(args: argparse.Namespace) -> Collection:
    if args.layout == "bright":
        col = load_bright(args.collection, args.domain, long_documents=args.long_documents)
    else:
        col = load_beir(args.collection, split=args.split)
    return col.subset(args.max_queries) if args.max_queries else col


def first_stage(args: argparse.Namespace, col: Collection) -> tuple[dict[str, dict[str, float]], str]:
    if args.first_stage == "bm25":
        return bm25_search(col, k=args.k, progress=not args.no_progress), "bm25"
    if args.first_stage == "dense":
        return dense_search(col, args.dense_model, k=args.k, progress=not args.no_progress), "dense"
    run = read_trec_run(args.first_stage_run)
    run = {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[: args.k]) for q, d in run.items() if q in col.queries}
    if not run:
        sys.exit(f"error: no query of {args.first_stage_run} is in the collection; use a run of the same collection")
    return run, Path(args.first_stage_run).stem.replace(" ", "_") or "run"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def table(measures: list[str], base: dict[str, float], rer: dict[str, float], base_name: str) -> str:
    rows = [f"{'measure':<10} {base_name:>10} {'reranked':>10} {'delta':>8}"]
    for m in measures:
        rows.append(f"{m:<10} {base[m]:>10.4f} {rer[m]:>10.4f} {rer[m] - base[m]:>+8.4f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    col = load(args)
    print(col.describe())
    t0 = time.perf_counter()
    base, base_name = first_stage(args, col)
    t_first = time.perf_counter() - t0

    opts: dict[str, Any] = {}
    if args.base_url:
        opts["base_url"] = args.base_url
    t0 = time.perf_counter()
    reranker = ReasoningReranker(args.model, backend=args.backend, mode=args.mode, batch_size=args.batch_size,
                                 max_doc_tokens=args.max_doc_tokens, max_new_tokens=args.max_new_tokens,
                                 device=args.device, dtype=args.dtype, **opts)
    t_load = time.perf_counter() - t0
    print(f"reranker: {reranker!r}")
    results: dict[str, list[Any]] = {}
    rerank_k = args.rerank_k or args.k
    t0 = time.perf_counter()
    reranked = rerank_run(reranker, col, base, k=rerank_k, progress=not args.no_progress, results=results)
    t_rerank = time.perf_counter() - t0
    n_docs = sum(len(v) for v in results.values())

    base_agg, base_q = evaluate(col.qrels, base, measures)
    rer_agg, rer_q = evaluate(col.qrels, reranked, measures)
    print()
    print(table(measures, base_agg, rer_agg, base_name))
    print(f"\nreranked {n_docs} documents of {len(results)} queries in {t_rerank:.1f} s "
          f"({n_docs / t_rerank if t_rerank else float('nan'):.2f} docs/s; model load {t_load:.1f} s; "
          f"first stage {t_first:.2f} s); stats: {reranker.stats.as_dict()}")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_trec_run(base, out / "first_stage.trec", tag=base_name)
    write_trec_run(reranked, out / "reranked.trec", tag=f"reasonrank-{args.mode}")
    write_qrels(col.qrels, out / "qrels.txt")
    with (out / "per_query.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["query_id", "system", *measures])
        for q in sorted(base_q):
            w.writerow([q, base_name, *(f"{base_q[q][m]:.6f}" for m in measures)])
            w.writerow([q, "reranked", *(f"{rer_q[q][m]:.6f}" for m in measures)])
    with (out / "judgments.jsonl").open("w", encoding="utf-8") as fh:
        for q, res in results.items():
            for r in res:
                fh.write(json.dumps({"query_id": q, "doc_id": r.id, "score": r.score, "label": r.label,
                                     "label_probs": list(r.label_probs), "explanation": r.explanation,
                                     "parse_ok": r.parse_ok, "truncated": r.truncated,
                                     "qrel": col.qrels.get(q, {}).get(r.id or "")}) + "\n")
    summary = {"collection": col.describe(), "layout": args.layout, "first_stage": base_name, "k": args.k,
               "rerank_k": rerank_k, "model": args.model, "backend": args.backend, "mode": args.mode,
               "reranker": repr(reranker), "batch_size": args.batch_size, "max_doc_tokens": args.max_doc_tokens,
               "measures": {"first_stage": base_agg, "reranked": rer_agg},
               "per_query": {"first_stage": base_q, "reranked": rer_q},
               "timing_s": {"first_stage": t_first, "model_load": t_load, "rerank": t_rerank},
               "reranked_docs": n_docs, "docs_per_s": n_docs / t_rerank if t_rerank else None,
               "stats": reranker.stats.as_dict(), "machine": machine()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"wrote {out}/: first_stage.trec reranked.trec qrels.txt per_query.csv judgments.jsonl summary.json")
    reranker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
