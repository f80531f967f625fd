"""benchmarks/explanations.py: the stance and grounding rules, the balanced pairs, and a real run of both
variants (reasoning, explain_top_k's verdict-given prompt) with the tiny model on the tiny BEIR fold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_BEIR = ROOT / "training" / "configs" / "data" / "tiny-beir"


def test_stance_and_grounding_rules(load_benchmark) -> None:
    bench = load_benchmark("explanations")
    assert bench.stance("The document defines BM25, which the query asks about.") == 1
    assert bench.stance("The document is about pasta. It is unrelated to the query.") == 0
    assert bench.stance("It does not directly answer the query but does provide relevant information.") == 1
    assert bench.stance("The document does not provide relevant information about tides.") == 0
    assert bench.grounded("Okapi antelope", "bm25", "Okapi BM25") == 0.5
    assert bench.grounded("The document is relevant.", "q", "d") == 1.0  # judging words only
    from reasonrank.templates import REASONING_TEMPLATE

    led = "The document is relevant to the query because it defines BM25."
    assert bench.model_words(led, REASONING_TEMPLATE, (0, 1), 1, "explain") == "defines BM25."
    assert bench.model_words(led, REASONING_TEMPLATE, (0, 1), 1, "reasoning") == led
    assert bench.model_words(led, REASONING_TEMPLATE, (0, 1), 0, "explain") == led  # not the lead of label 0


def test_pairs_are_balanced_and_summary_counts_each_side(load_benchmark) -> None:
    from reasonrank.evaluation import load_beir

    bench = load_benchmark("explanations")
    fold = load_beir(TINY_BEIR, "test")
    q = sorted(fold.qrels)[0]
    rel = next(d for d, r in fold.qrels[q].items() if r > 0)
    neg = next(d for d in fold.corpus if fold.qrels[q].get(d, 0) <= 0)
    chosen = bench.pairs(fold, {q: {neg: 2.0, rel: 1.0}}, n=5, depth=10)
    assert chosen == [{"qid": q, "docid": rel, "gold": 1}, {"qid": q, "docid": neg, "gold": 0}]
    rows = [{"gold": 1, "label": 1, "parse_ok": True, "explanation": "It defines bm25.", "query": "bm25", "text": "x"},
            {"gold": 0, "label": 1, "parse_ok": True, "explanation": "It defines bm25.", "query": "bm25", "text": "x"},
            {"gold": 0, "label": 0, "parse_ok": False, "explanation": "", "query": "bm25", "text": "x"}]
    got = bench.summarise(rows)
    assert (got["pairs"], got["explained"], got["polarity_relevant"], got["polarity_not_relevant"]) == (3, 2, 1.0, 0.0)
    assert got["polarity_vs_verdict"] == 1.0 and got["parse_rate"] == pytest.approx(2 / 3, abs=1e-3)


def test_the_benchmark_runs_both_variants(load_benchmark, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    from reasonrank.evaluation import bm25_search, load_beir, write_trec_run

    bench = load_benchmark("explanations")
    fold = tmp_path / "tiny-dev"
    shutil.copytree(TINY_BEIR, fold)
    (fold / "runs").mkdir()
    write_trec_run(bm25_search(load_beir(fold, "test"), k=10), fold / "runs" / "dense.trec")
    assert bench.main(["--system", f"tiny={tiny_model_dir}", "--fold", str(fold), "--split", "test",
                       "--max-queries", "2", "--max-new-tokens", "6", "--dtype", "float32",
                       "--teacher", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out")]) == 0
    table = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["system"] for r in table] == ["tiny reasoning", "tiny explain"]
    assert all(r["pairs"] == 2 for r in table)  # q6: the one query whose BM25 run holds a non-relevant document
    given = [json.loads(line) for line in (tmp_path / "out" / "tiny-dev-tiny-explain.jsonl").open()]
    assert [r["gold"] for r in given] == [1, 0] and all(r["given"] for r in given)
    assert "| tiny-dev | tiny explain | 2 |" in capsys.readouterr().out
