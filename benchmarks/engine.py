#!/usr/bin/env python
"""The engine table: first stages vs trained rerankers (each stage, direct and reasoning mode, fused) on the
dev folds that ``reasonrank-train data`` builds (never on fanout-final-test).

For every fold: BM25, dense and their union (the runs the data builder wrote), then each ``--system``
reranking the top ``--depth`` of the ``--first-stage`` run in each ``--modes`` mode. Model scores are cached
per query in ``--out`` under the system's name, its weights' fingerprint and the dtype it ran in (a rerun
resumes; new weights under an old name, or the same ones in another dtype or at another ``--max-doc-tokens``,
are scored anew), so adding a
system or a mode only scores what is new. *Doc share* (:func:`document_share`) is the share of a model's
score variance that the document alone explains: high when some documents score high whatever is asked.
``--prior-weights 0,0.5`` adds a row per weight for the document prior (``ReasoningReranker(prior_weight=...)``):
each document is scored once under the content-free query and divided out of the cached label probabilities.
``--likelihood-weights 0,0.5`` likewise adds a row per weight for the query likelihood
(``ReasoningReranker(likelihood_weight=...)``): each candidate's ``query_logprob`` is scored once and mixed
into the cached label scores over the query's candidates.
The fusion weight (``ReasoningReranker(fusion_weight=...)``) is tuned on ``--tune-fold``: its own figure
there is cross-fitted (weight tuned on one half of the queries, measured on the other, both ways), and the
weight tuned on the whole fold is applied unchanged to the other folds. A system whose model card carries a
fusion weight (the shipped default's) also gets its figure at that weight, as ``ReasoningReranker()`` returns
it; each row's *vs first stage* columns give the mean per-query difference in nDCG@10 from the first stage
with its 95% paired-bootstrap interval (:func:`paired_delta`), for the model alone and at the card's weight.

Example (the docs/benchmarks.md table)::

    python benchmarks/engine.py --system zero-shot=smollm2-local --system sft=runs/reasonrank-tiny/sft \\
        --system sft+grpo=runs/reasonrank-tiny/grpo --system shipped=reasonrank-tiny --modes direct
    python benchmarks/engine.py --system sft=runs/reasonrank-tiny/sft ... --modes reasoning --max-queries 20 --depth 10
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from reasonrank import ReasoningReranker
from reasonrank.evaluation import Collection, evaluate, load_beir, read_trec_run
from reasonrank.fusion import fuse_scores, list_scores, tune_fusion_weight
from reasonrank.io import read_jsonl
from reasonrank.parsing import calibrate, expected_score
from reasonrank.planning import PRIOR_QUERY

MEASURES = ("nDCG@10", "R@10")
LIST_WEIGHTS = ("fusion_weight", "prior_weight", "likelihood_weight")  # card fields the cached scores ignore
DOC_TOKENS = 160  # --max-doc-tokens default: what reasonrank-tiny was trained with


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--system", action="append", default=[], metavar="NAME=MODEL",
                   help="a reranker to evaluate: a label and a model (alias, folder or adapter folder)")
    p.add_argument("--fold", action="append", type=Path, metavar="DIR",
                   help="dev fold folders (default: data/built/fanout-vital-dev and data/built/python-faq-dev)")
    p.add_argument("--split", default="dev")
    p.add_argument("--first-stage", default="dense", help="run of each fold to rerank: runs/<name>.trec")
    p.add_argument("--depth", type=int, default=30, help="documents reranked per query")
    p.add_argument("--modes", default="direct", help="comma-separated: direct, reasoning")
    p.add_argument("--max-queries", type=int, default=0, help="first N queries per fold by sorted id (0: all)")
    p.add_argument("--max-doc-tokens", type=int, default=DOC_TOKENS)
    p.add_argument("--no-titles", action="store_true",
                   help="show the models the documents without their titles (the first stages keep theirs): "
                        "how much a model leans on a title, as untitled chunks give it none")
    p.add_argument("--max-new-tokens", type=int, default=96, help="reasoning mode: explanation budget")
    p.add_argument("--prior-weights", default="0",
                   help="comma-separated ReasoningReranker(prior_weight=...) values, each a row NAME+priorW "
                        "(direct mode; 0: off): each document's prior is scored once and divided out of the "
                        "cached label probabilities (reasonrank.parsing.calibrate, what the reranker does)")
    p.add_argument("--likelihood-weights", default="0",
                   help="comma-separated ReasoningReranker(likelihood_weight=...) values, each a row NAME+qlW "
                        "(direct mode; 0: off): each candidate's query log-likelihood is scored once, cached, "
                        "and mixed into the cached label scores (reasonrank.fusion.list_scores)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="auto",
                   help="model dtype; auto: the reranker's default (bf16 on CPUs with native bf16, ~1.7x faster "
                        "there; fp32 on CPUs without it, where bf16 matmuls are ~8x slower)")
    p.add_argument("--labels", default="0,1", help="label scale of every system (the trained models' is 0,1)")
    p.add_argument("--tune-fold", default="fanout-vital-dev", help="fold the fusion weight is tuned on")
    p.add_argument("--out", type=Path, default=Path("runs/engine"), help="score cache and summary.json")
    p.add_argument("--weight-grid", action="store_true",
                   help="also print each system's fused nDCG@10 at every weight 0.0, 0.1, ..., 1.0 (whole fold)")
    args = p.parse_args(argv)
    args.fold = args.fold or [Path("data/built/fanout-vital-dev"), Path("data/built/python-faq-dev")]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.labels = tuple(int(x) for x in args.labels.split(","))
    bad = [m for m in args.modes if m not in ("direct", "reasoning")]
    if bad:
        p.error(f"--modes: unknown mode {bad[0]!r}; use direct, reasoning or both")
    systems = []
    for spec in args.system:
        name, sep, model = spec.partition("=")
        if not sep or not name or not model:
            p.error(f"--system {spec!r}: write NAME=MODEL, e.g. --system shipped=reasonrank-tiny")
        systems.append((name, model))
    for flag in ("prior_weights", "likelihood_weights"):
        opt = "--" + flag.replace("_", "-")
        try:
            vals = [float(w) for w in getattr(args, flag).split(",") if w.strip()]
        except ValueError:
            p.error(f"{opt} {getattr(args, flag)!r}: write numbers in [0, 1], e.g. 0,0.5")
        if not vals or any(not 0 <= w <= 1 for w in vals) or (any(vals) and args.modes != ["direct"]):
            p.error(f"{opt}: numbers in [0, 1], with --modes direct (it applies to direct-mode scores)")
        setattr(args, flag, vals)
    args.system = systems
    return args


def _subset(fold: Collection, run: dict[str, dict[str, float]], n: int) -> list[str]:
    qids = sorted(q for q in fold.qrels if q in run and any(r > 0 for r in fold.qrels[q].values()))
    return qids[:n] if n else qids


def _head(run_q: dict[str, float], depth: int) -> list[str]:
    return sorted(run_q, key=lambda d: -run_q[d])[:depth]


def fingerprint(model: str) -> str:
    """8 hex digits naming a model's weights, so that a cache of scores never outlives them: a hash of the
    weight files and ``reasonrank.json`` of a local folder or a shipped alias; the name itself otherwise
    (hub ids, GGUF aliases: their files do not change). A model card's fusion, prior and likelihood weights
    are left out: the cache holds the label pass alone (and each document's prior and query likelihood), so a
    card retuned on the same weights keeps its cached scores."""
    from reasonrank.models import SHIPPED_MODELS, shipped_model_dir

    path = shipped_model_dir(model) if model in SHIPPED_MODELS else Path(model)
    h = hashlib.sha1(model.encode())
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.suffix in (".safetensors", ".bin"):
                h.update(f.name.encode() + f.read_bytes())
            elif f.name == "reasonrank.json":  # less the list-level weights, which no cached score depends on
                card = {k: v for k, v in json.loads(f.read_text(encoding="utf-8")).items() if k not in LIST_WEIGHTS}
                h.update(f.name.encode() + json.dumps(card, sort_keys=True).encode())
    return h.hexdigest()[:8]


def _per_query(fold: Collection, run: dict[str, dict[str, float]], qids: list[str], depth: int, cache: Path,
               titles: bool, score: Callable[[str, list[Any]], list[dict[str, Any]]],
               ) -> tuple[dict[str, dict[str, dict[str, Any]]], float]:
    """Rows ``{qid: {docid: row}}`` for the top ``depth`` of each query, cached per query in ``cache`` (JSON
    lines); ``score(query, documents)`` gives one row per document of a query not cached yet. Also documents/s
    of that scoring (NaN when everything was cached)."""
    done: dict[str, dict[str, dict[str, Any]]] = {}
    if cache.is_file():
        for _, row in read_jsonl(cache):
            done.setdefault(row["qid"], {})[row["docid"]] = row
    seconds, docs = 0.0, 0
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("a", encoding="utf-8") as fh:
        for q in qids:
            head = _head(run[q], depth)
            if q in done and set(head) <= set(done[q]):
                continue
            started = time.perf_counter()
            rows = score(fold.queries[q], [fold.corpus[d] if titles else replace(fold.corpus[d], title=None)
                                           for d in head])
            seconds += time.perf_counter() - started
            docs += len(head)
            done[q] = {d: {"qid": q, "docid": d, **r} for d, r in zip(head, rows)}
            fh.writelines(json.dumps(r) + "\n" for r in done[q].values())
            fh.flush()
    return done, (docs / seconds if seconds else float("nan"))


def score_system(rr: ReasoningReranker, fold: Collection, run: dict[str, dict[str, float]], qids: list[str],
                 depth: int, cache: Path, *, titles: bool = True) -> tuple[dict[str, dict[str, dict[str, Any]]], float]:
    """Model judgments ``{qid: {docid: row}}`` of the top ``depth`` of each query; cached per query."""
    def judge(query: str, docs: list[Any]) -> list[dict[str, Any]]:
        return [{"score": r.score, "label": r.label, "parse_ok": r.parse_ok, "error": r.error,
                 "explanation": r.explanation, "label_probs": list(r.label_probs)} for r in rr.score(query, docs)]

    return _per_query(fold, run, qids, depth, cache, titles, judge)


def _reranked(judged: dict[str, dict[str, dict[str, Any]]], run: dict[str, dict[str, float]], depth: int,
              weight: float | None) -> dict[str, dict[str, float]]:
    """The run the reranker returns: judged head by (fused) score, the rest of the first stage below."""
    out: dict[str, dict[str, float]] = {}
    for q, rows in judged.items():
        head = _head(run[q], depth)
        model = [rows[d]["score"] for d in head]
        scores = model if weight is None else fuse_scores(model, [run[q][d] for d in head], weight)
        out[q] = {d: s - 1e-9 * i for i, (d, s) in enumerate(zip(head, scores))}
        out[q].update({d: -1.0 - i for i, d in enumerate(_head(run[q], len(run[q]))[depth:])})
    return out


def document_share(judged: dict[str, dict[str, dict[str, Any]]], min_queries: int = 3) -> float | None:
    """Share of the variance of a model's scores (as logits) that the document alone explains: 1 - the
    variance left after subtracting each document's mean score over the queries that judged it, over the
    documents judged for at least ``min_queries`` queries. Near 0: a document's score depends on the query;
    high: some documents score high (or low) whatever is asked. None when no document recurs (one query's
    candidates rarely are another's, except in small corpora such as the Python FAQ). Read it where the
    queries are unrelated to each other (the Python FAQ's): FanOutQA's sub-questions of one question share
    their candidates and their relevant pages, so documents there rightly keep similar scores across them.
    """
    by_doc: dict[str, list[float]] = {}
    for rows in judged.values():
        for d, r in rows.items():
            p = min(max(float(r["score"]), 1e-6), 1 - 1e-6)
            by_doc.setdefault(d, []).append(math.log(p / (1 - p)))
    vals = [v for v in by_doc.values() if len(v) >= min_queries]
    flat = [x for v in vals for x in v]
    if len(vals) < 2:
        return None
    mean = sum(flat) / len(flat)
    total = sum((x - mean) ** 2 for x in flat)
    within = sum((x - sum(v) / len(v)) ** 2 for v in vals for x in v)
    return 1 - within / total if total else None


def _cross_fitted(qrels: dict, run: dict, judged: dict, depth: int) -> float:
    """nDCG@10 of fusion with the weight tuned on the other half of the queries (by a hash of the id)."""
    halves = [{q for q in judged if int(hashlib.sha1(q.encode()).hexdigest(), 16) % 2 == h} for h in (0, 1)]
    scores: dict[str, float] = {}
    for tune, test in (halves, halves[::-1]):
        if not tune or not test:
            continue
        model = {q: {d: judged[q][d]["score"] for d in _head(run[q], depth)} for q in tune}
        weight, _ = tune_fusion_weight({q: qrels[q] for q in tune}, {q: run[q] for q in tune}, model)
        _, per_q = evaluate({q: qrels[q] for q in test}, _reranked({q: judged[q] for q in test}, run, depth, weight),
                            ["nDCG@10"])
        scores.update({q: v["nDCG@10"] for q, v in per_q.items()})
    return sum(scores.values()) / len(scores) if scores else float("nan")


def paired_delta(system: dict[str, float], base: dict[str, float], *, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean per-query ``system - base`` over the queries of ``system`` and its 95% paired-bootstrap interval
    (percentile, seeded): an interval that holds 0 says the query sample cannot tell the two apart."""
    import numpy as np
    from scipy.stats import bootstrap

    diffs = np.array([system[q] - base[q] for q in system], dtype=float)
    if len(diffs) < 2 or not diffs.any():
        mean = float(diffs.mean()) if len(diffs) else float("nan")
        return mean, mean, mean
    ci = bootstrap((diffs,), np.mean, confidence_level=0.95, n_resamples=resamples, method="percentile",
                   random_state=seed).confidence_interval
    return float(diffs.mean()), float(ci.low), float(ci.high)


def score_priors(rr: ReasoningReranker, fold: Collection, docids: list[str], cache: Path, *,
                 titles: bool = True) -> dict[str, list[float]]:
    """Each document's label probabilities under the content-free query the reranker's ``prior_weight`` uses;
    cached per document."""
    done = {row["docid"]: row["label_probs"] for _, row in read_jsonl(cache)} if cache.is_file() else {}
    todo = [d for d in docids if d not in done]
    with cache.open("a", encoding="utf-8") as fh:
        for s in range(0, len(todo), 64):
            part = todo[s:s + 64]
            docs = [fold.corpus[d] if titles else replace(fold.corpus[d], title=None) for d in part]
            for d, r in zip(part, rr.score(PRIOR_QUERY, docs)):
                done[d] = list(r.label_probs)
                fh.write(json.dumps({"docid": d, "label_probs": done[d]}) + "\n")
            fh.flush()
    return done


def score_likelihoods(rr: ReasoningReranker, fold: Collection, run: dict[str, dict[str, float]], qids: list[str],
                      depth: int, cache: Path, *, titles: bool = True) -> tuple[dict[str, dict[str, float]], float]:
    """Each candidate's ``query_logprob`` as the reranker computes it (the planner's likelihood pairs, the
    backend's ``continuation_logprobs``), ``{qid: {docid: value}}``, cached per query; and documents/s of
    that pass (NaN when everything was cached)."""
    planner = rr._planner()

    def likelihoods(query: str, docs: list[Any]) -> list[dict[str, Any]]:
        texts = [t for t, _ in rr.prompts.document_texts(docs, rr.backend)]
        pairs = planner.likelihood_pairs([rr.prompts.query_text(query, rr.backend)] * len(texts), texts)
        return [{"query_logprob": v} for v in rr.backend.continuation_logprobs(pairs)]

    rows, dps = _per_query(fold, run, qids, depth, cache, titles, likelihoods)
    return {q: {d: r["query_logprob"] for d, r in v.items()} for q, v in rows.items()}, dps


def with_likelihood(judged: dict[str, dict[str, dict[str, Any]]], qlps: dict[str, dict[str, float]],
                    weight: float) -> dict[str, dict[str, dict[str, Any]]]:
    """The judgments scored as ``ReasoningReranker(likelihood_weight=weight)`` scores a query's candidates
    (:func:`reasonrank.fusion.list_scores`; tests/test_likelihood.py checks the reranker against it)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for q, rows in judged.items():
        ids = list(rows)
        model, _ = list_scores([rows[d]["score"] for d in ids], [qlps[q][d] for d in ids], None,
                               likelihood_weight=weight)
        out[q] = {d: {**rows[d], "score": m} for d, m in zip(ids, model)}
    return out


def calibrated(judged: dict[str, dict[str, dict[str, Any]]], priors: dict[str, list[float]], weight: float,
               labels: tuple[int, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    """The judgments with each document's prior divided out (:func:`reasonrank.parsing.calibrate`), scored as the
    reranker scores them (tests/test_prior.py checks the reranker against this arithmetic)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for q, rows in judged.items():
        out[q] = {}
        for d, r in rows.items():
            probs = r.get("label_probs") or ([1 - r["score"], r["score"]] if len(labels) == 2 else None)
            if probs is None:
                raise SystemExit(f"cached scores of {q}/{d} carry no label_probs; delete the cache to rescore")
            out[q][d] = {**r, "score": expected_score(calibrate(probs, priors[d], weight), labels)}
    return out


def _row(fname: str, system: str, mode: str, judged: dict[str, dict[str, dict[str, Any]]], qrels: dict,
         first: dict[str, dict[str, float]], args: argparse.Namespace,
         weights: dict[tuple[str, str], float], base_q: dict[str, float],
         card_weight: float | None = None) -> dict[str, Any]:
    """One table row: the model alone, fused (the weight tuned on ``--tune-fold``; and at the model card's
    ``card_weight``), each against the first stage's per-query nDCG@10 ``base_q``, parse rate, doc share."""
    qids = list(judged)
    agg, per_q = evaluate(qrels, _reranked(judged, first, args.depth, None), MEASURES)
    flat = [r for q in judged.values() for r in q.values()]
    row = {"fold": fname, "system": system, "mode": mode, "queries": len(qids), **agg,
           "parse_rate": sum(r["parse_ok"] for r in flat) / len(flat),
           "errors": sum(bool(r["error"]) for r in flat), "doc_share": document_share(judged),
           "vs_first": paired_delta({q: per_q[q]["nDCG@10"] for q in qids}, base_q)}
    if card_weight:
        card, card_q = evaluate(qrels, _reranked(judged, first, args.depth, card_weight), ["nDCG@10"])
        row.update({"card_weight": card_weight, "card_nDCG@10": card["nDCG@10"],
                    "card_vs_first": paired_delta({q: card_q[q]["nDCG@10"] for q in qids}, base_q)})
    model_scores = {q: {d: judged[q][d]["score"] for d in _head(first[q], args.depth)} for q in qids}
    if fname == args.tune_fold:
        weights[(system, mode)], _ = tune_fusion_weight(qrels, {q: first[q] for q in qids}, model_scores)
        row["fused_nDCG@10"] = _cross_fitted(qrels, first, judged, args.depth)
    elif (system, mode) in weights:
        fused, _ = evaluate(qrels, _reranked(judged, first, args.depth, weights[(system, mode)]), ["nDCG@10"])
        row["fused_nDCG@10"] = fused["nDCG@10"]
    row["fusion_weight"] = weights.get((system, mode))
    if args.weight_grid:
        row["fused_grid"] = {w / 10: round(evaluate(qrels, _reranked(judged, first, args.depth, w / 10),
                                                    ["nDCG@10"])[0]["nDCG@10"], 3) for w in range(11)}
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    folds = {f.name: (load_beir(f, args.split, name=f.name), f) for f in args.fold}
    if args.tune_fold not in folds:
        sys.exit(f"--tune-fold {args.tune_fold!r} is not one of the folds ({', '.join(folds)})")
    rows: list[dict[str, Any]] = []
    weights: dict[tuple[str, str], float] = {}
    order = [args.tune_fold, *[n for n in folds if n != args.tune_fold]]
    prints = {sname: fingerprint(model) for sname, model in args.system}  # hashed once, used per fold and mode
    for fname in order:
        fold, path = folds[fname]
        first = read_trec_run(path / "runs" / f"{args.first_stage}.trec")
        qids = _subset(fold, first, args.max_queries)
        qrels = {q: fold.qrels[q] for q in qids}
        _, base = evaluate(qrels, {q: first[q] for q in qids}, ["nDCG@10"])
        base_q = {q: base[q]["nDCG@10"] for q in qids}  # what each reranker is compared with, query by query
        for name in ("bm25", "dense", "union"):
            f = path / "runs" / f"{name}.trec"
            if f.is_file():
                agg, _ = evaluate(qrels, read_trec_run(f), MEASURES)
                rows.append({"fold": fname, "system": name, "mode": "first stage", "queries": len(qids), **agg})
        for sname, model in args.system:
            for mode in args.modes:
                with ReasoningReranker(model, mode=mode, label_scale=args.labels, prior_weight=0, likelihood_weight=0,
                                       max_doc_tokens=args.max_doc_tokens, max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, dtype=args.dtype) as rr:
                    dtype = str(getattr(rr.backend, "dtype", "na")).replace("torch.", "")  # as resolved here
                    card_weight = rr.fusion_weight  # the model card's (None: the card sets none)
                    stem = args.out / fname / (f"{sname}-{prints[sname]}-{dtype}-{mode}-{args.first_stage}"
                                               f"{'-untitled' if args.no_titles else ''}"
                                               f"{'' if args.max_doc_tokens == DOC_TOKENS else f'-doc{args.max_doc_tokens}'}")
                    judged, dps = score_system(rr, fold, first, qids, args.depth, Path(f"{stem}.jsonl"),
                                               titles=not args.no_titles)
                    docids = sorted({d for q in qids for d in _head(first[q], args.depth)})
                    priors = score_priors(rr, fold, docids, Path(f"{stem}-prior.jsonl"), titles=not args.no_titles) \
                        if any(args.prior_weights) else {}
                    qlps, ql_dps = score_likelihoods(rr, fold, first, qids, args.depth, Path(f"{stem}-ql.jsonl"),
                                                     titles=not args.no_titles) \
                        if any(args.likelihood_weights) else ({}, float("nan"))
                judged = {q: judged[q] for q in qids}
                for pw in args.prior_weights:
                    for lw in args.likelihood_weights:
                        label = sname + (f"+prior{pw:g}" if pw else "") + (f"+ql{lw:g}" if lw else "")
                        rows_pw = calibrated(judged, priors, pw, args.labels) if pw else judged
                        row = _row(fname, label, mode, with_likelihood(rows_pw, qlps, lw) if lw else rows_pw,
                                   qrels, first, args, weights, base_q, card_weight)
                        row["docs_per_s"] = round(dps, 2)
                        if lw:
                            row["likelihood_docs_per_s"] = round(ql_dps, 2)  # the extra pass, on its own
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "rows": rows}, indent=2), encoding="utf-8")
    print(f"\nfirst stage: {args.first_stage}, depth {args.depth}; fusion weight tuned on {args.tune_fold} "
          "(cross-fitted there)\n")
    print("| fold | system | mode | queries | nDCG@10 | R@10 | vs first stage [95% CI] | fused nDCG@10 (weight) "
          "| at the card's weight | vs first stage [95% CI] | parse rate | docs/s | doc share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def delta(d: Any) -> str:
        return "" if d is None else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"

    for r in rows:
        fused = f"{r['fused_nDCG@10']:.3f} ({r['fusion_weight']})" if r.get("fused_nDCG@10") is not None else ""
        card = f"{r['card_nDCG@10']:.3f} ({r['card_weight']})" if "card_nDCG@10" in r else ""
        share = "" if r.get("doc_share") is None else f"{r['doc_share']:.2f}"
        extra = (f"{r['parse_rate']:.1%} | {r['docs_per_s']} | {share}" if "parse_rate" in r else " | | ")
        print(f"| {r['fold']} | {r['system']} | {r['mode']} | {r['queries']} | {r['nDCG@10']:.3f} | "
              f"{r['R@10']:.3f} | {delta(r.get('vs_first'))} | {fused} | {card} | {delta(r.get('card_vs_first'))} "
              f"| {extra} |")
    if args.weight_grid:
        print("\nfused nDCG@10 by weight (w = 0: the model alone, 1: the first stage):")
        for r in rows:
            if "fused_grid" in r:
                print(f"{r['fold']} {r['system']} {r['mode']}: " +
                      " ".join(f"{w:.1f}={v:.3f}" for w, v in r["fused_grid"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
