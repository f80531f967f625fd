"""benchmarks/engine.py: the document-share diagnostic, and a real run with the tiny model on the tiny BEIR
fold (scores cached per system and dtype, with and without titles, and the table printed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_BEIR = ROOT / "training" / "configs" / "data" / "tiny-beir"


def _judged(score):
    return {q: {d: {"score": score(q, d)} for d in ("a", "b", "c", "d")} for q in range(6)}


def test_document_share_separates_document_priors_from_query_dependence(load_benchmark) -> None:
    bench = load_benchmark("engine")
    prior = {"a": 0.9, "b": 0.6, "c": 0.3, "d": 0.1}
    assert bench.document_share(_judged(lambda q, d: prior[d])) == pytest.approx(1.0)
    # each document scores high for one query only: its mean explains almost nothing
    matched = bench.document_share(_judged(lambda q, d: 0.95 if "abcd"[q % 4] == d else 0.05))
    assert matched is not None and matched < 0.1
    mixed = bench.document_share(_judged(lambda q, d: min(0.99, prior[d] * (1.5 if "abcd"[q % 4] == d else 1.0))))
    assert matched < mixed < 1.0
    assert bench.document_share({0: {"a": {"score": 0.5}}, 1: {"b": {"score": 0.9}}}) is None  # nothing recurs
    assert bench.document_share(_judged(lambda q, d: 0.0 if d == "a" else 1.0)) == pytest.approx(1.0)  # no NaN


def test_the_benchmark_runs_with_and_without_titles(load_benchmark, tiny_model_dir: Path, tmp_path: Path,
                                                    capsys) -> None:
    from reasonrank.evaluation import bm25_search, load_beir, write_trec_run

    bench = load_benchmark("engine")
    fold = tmp_path / "tiny-dev"
    shutil.copytree(TINY_BEIR, fold)
    (fold / "runs").mkdir()
    write_trec_run(bm25_search(load_beir(fold, "test"), k=10), fold / "runs" / "dense.trec")
    argv = ["--system", f"tiny={tiny_model_dir}", "--fold", str(fold), "--split", "test", "--tune-fold", "tiny-dev",
            "--depth", "5", "--dtype", "float32", "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["system"] for r in rows] == ["dense", "tiny"]
    tiny = rows[1]
    assert tiny["queries"] == rows[0]["queries"] > 1 and tiny["errors"] == 0 and tiny["parse_rate"] == 1.0
    assert 0.0 <= tiny["nDCG@10"] <= 1.0 and tiny["fusion_weight"] is not None
    assert tiny["doc_share"] is None  # 2 queries x 5 documents: no document judged for 3 queries
    out = capsys.readouterr().out
    assert "| tiny-dev | tiny | direct |" in out and "doc share" in out
    assert bench.main([*argv, "--no-titles"]) == 0
    caches = sorted((p.name for p in (tmp_path / "out" / "tiny-dev").iterdir()), key=len)
    assert len(caches) == 2 and caches[1] == caches[0].replace(".jsonl", "-untitled.jsonl")
    titled, untitled = ([json.loads(x) for x in (tmp_path / "out" / "tiny-dev" / c).open()] for c in caches)
    assert [(r["qid"], r["docid"]) for r in titled] == [(r["qid"], r["docid"]) for r in untitled]
    assert [r["score"] for r in titled] != [r["score"] for r in untitled]  # the model saw other prompts
    assert bench.main([*argv, "--prior-weights", "0,1"]) == 0  # the same system with and without the prior
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["system"] for r in rows] == ["dense", "tiny", "tiny+prior1"]
    plain, prior = ([json.loads(x) for x in (tmp_path / "out" / "tiny-dev" / f"{n}-{c.split('-', 1)[1]}").open()]
                    for n, c in (("tiny", caches[0]), ("tiny+prior1", caches[0])))
    assert [(r["qid"], r["docid"]) for r in plain] == [(r["qid"], r["docid"]) for r in prior]
    assert [r["score"] for r in plain] != [r["score"] for r in prior] and not any(r["error"] for r in prior)
    with pytest.raises(SystemExit):
        bench.parse_args(["--system", "a=b", "--prior-weights", "0.5", "--modes", "reasoning"])
