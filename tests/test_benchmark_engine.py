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
    mean, lo, hi = tiny["vs_first"]  # per query against the first stage it reranked
    assert mean == pytest.approx(tiny["nDCG@10"] - rows[0]["nDCG@10"]) and lo <= mean <= hi
    assert "card_nDCG@10" not in tiny  # the tiny model's card sets no fusion weight
    out = capsys.readouterr().out
    assert "| tiny-dev | tiny | direct |" in out and "doc share" in out
    assert bench.main([*argv, "--no-titles"]) == 0
    caches = sorted((p.name for p in (tmp_path / "out" / "tiny-dev").iterdir()), key=len)
    assert len(caches) == 2 and caches[1] == caches[0].replace(".jsonl", "-untitled.jsonl")
    assert bench.main([*argv, "--max-doc-tokens", "8"]) == 0  # other documents: scored anew, not read from the cache
    cut = tmp_path / "out" / "tiny-dev" / caches[0].replace(".jsonl", "-doc8.jsonl")
    assert cut.is_file() and len(cut.read_text().splitlines()) == len((tmp_path / "out" / "tiny-dev" / caches[0])
                                                                      .read_text().splitlines())
    titled, untitled = ([json.loads(x) for x in (tmp_path / "out" / "tiny-dev" / c).open()] for c in caches)
    assert [(r["qid"], r["docid"]) for r in titled] == [(r["qid"], r["docid"]) for r in untitled]
    assert [r["score"] for r in titled] != [r["score"] for r in untitled]  # the model saw other prompts
    assert bench.main([*argv, "--prior-weights", "0,1"]) == 0  # the same system with and without the prior
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["system"] for r in rows] == ["dense", "tiny", "tiny+prior1"]
    assert rows[1]["nDCG@10"] == tiny["nDCG@10"]  # the cached scores, unchanged
    prior_cache = tmp_path / "out" / "tiny-dev" / caches[0].replace(".jsonl", "-prior.jsonl")
    priors = {r["docid"]: r["label_probs"] for r in map(json.loads, prior_cache.open())}
    judged: dict = {}
    for r in map(json.loads, (tmp_path / "out" / "tiny-dev" / caches[0]).open()):
        judged.setdefault(r["qid"], {})[r["docid"]] = r
    assert set(priors) == {d for rows_q in judged.values() for d in rows_q}  # one prior per judged document
    # the benchmark's arithmetic is the reranker's: prior_weight=1 scores the same pairs the same
    from reasonrank import ReasoningReranker
    from reasonrank.evaluation import load_beir

    col = load_beir(fold, "test")
    q = sorted(judged)[0]
    ids = sorted(judged[q])
    want = bench.calibrated({q: judged[q]}, priors, 1.0, (0, 1))[q]
    got = ReasoningReranker(str(tiny_model_dir), mode="direct", label_scale=(0, 1), dtype="float32",
                            prior_weight=1.0).score(col.queries[q], [col.corpus[d] for d in ids])
    assert [r.score for r in got] == pytest.approx([want[d]["score"] for d in ids], abs=1e-5)
    with pytest.raises(SystemExit):
        bench.parse_args(["--system", "a=b", "--prior-weights", "0.5", "--modes", "reasoning"])
    # the query likelihood: one cached value per judged pair, mixed as the reranker mixes it
    assert bench.main([*argv, "--likelihood-weights", "0,0.5"]) == 0
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["system"] for r in rows] == ["dense", "tiny", "tiny+ql0.5"] and rows[1]["nDCG@10"] == tiny["nDCG@10"]
    qls: dict = {}
    for r in map(json.loads, (tmp_path / "out" / "tiny-dev" / caches[0].replace(".jsonl", "-ql.jsonl")).open()):
        qls.setdefault(r["qid"], {})[r["docid"]] = r["query_logprob"]
    assert {q: set(v) for q, v in qls.items()} == {q: set(v) for q, v in judged.items()}
    want = bench.with_likelihood({q: judged[q]}, qls, 0.5)[q]
    got = ReasoningReranker(str(tiny_model_dir), mode="direct", label_scale=(0, 1), dtype="float32",
                            likelihood_weight=0.5).score(col.queries[q], [col.corpus[d] for d in ids])
    assert [r.query_logprob for r in got] == pytest.approx([qls[q][d] for d in ids], abs=1e-5)
    assert [r.score for r in got] == pytest.approx([want[d]["score"] for d in ids], abs=1e-5)


def test_paired_delta_is_the_mean_difference_with_a_bootstrap_interval(load_benchmark) -> None:
    bench = load_benchmark("engine")
    base = {str(q): 0.5 for q in range(40)}
    better = {q: 0.5 + 0.1 + (0.02 if int(q) % 2 else -0.02) for q in base}
    mean, lo, hi = bench.paired_delta(better, base)
    assert mean == pytest.approx(0.1) and 0.08 <= lo < mean < hi <= 0.12  # every query gains: 0 is outside
    noisy = {q: 0.5 + (0.3 if int(q) % 2 else -0.3) for q in base}
    mean, lo, hi = bench.paired_delta(noisy, base)
    assert mean == pytest.approx(0.0) and lo < 0 < hi  # gains and losses that cancel: 0 is inside
    assert bench.paired_delta(base, base) == (0.0, 0.0, 0.0)
    assert bench.paired_delta(better, base) == bench.paired_delta(better, base)  # seeded


def test_a_model_card_fusion_weight_gets_its_own_figure(load_benchmark, tiny_model_dir: Path, tmp_path: Path) -> None:
    from reasonrank.evaluation import bm25_search, load_beir, write_trec_run

    bench = load_benchmark("engine")
    fold = tmp_path / "tiny-dev"
    shutil.copytree(TINY_BEIR, fold)
    (fold / "runs").mkdir()
    write_trec_run(bm25_search(load_beir(fold, "test"), k=10), fold / "runs" / "dense.trec")
    model = tmp_path / "carded"
    shutil.copytree(tiny_model_dir, model)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "fusion_weight": 1.0}))
    assert bench.main(["--system", f"carded-0.5={model}", "--fold", str(fold), "--split", "test", "--tune-fold",
                       "tiny-dev", "--depth", "5", "--dtype", "float32", "--out", str(tmp_path / "out")]) == 0
    first, carded = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    cache = [p.name for p in (tmp_path / "out" / "tiny-dev").iterdir()]  # a dot in the name is not a suffix
    assert len(cache) == 1 and cache[0].startswith("carded-0.5-") and cache[0].endswith("-float32-direct-dense.jsonl")
    assert carded["card_weight"] == 1.0  # weight 1: the first stage's order, so its figure and no difference
    assert carded["card_nDCG@10"] == pytest.approx(first["nDCG@10"])
    assert carded["card_vs_first"] == pytest.approx([0.0, 0.0, 0.0])
    # a card retuned on the same weights keeps its cached scores; a card that changes the prompt does not
    before = bench.fingerprint(str(model))
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "fusion_weight": 0.3,
                                                       "likelihood_weight": 0.5, "prior_weight": 0.2}))
    assert bench.fingerprint(str(model)) == before
    (model / "reasonrank.json").write_text(json.dumps({"mode": "reasoning", "fusion_weight": 1.0}))
    assert bench.fingerprint(str(model)) != before
