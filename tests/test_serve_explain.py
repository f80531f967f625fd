"""`reasonrank serve --explain-top-k N`: direct-mode scores for every document, explanations for the top N only,
written by the reasoning prompt on the server's batcher thread (in-process app, tiny random model)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install "reasonrank[serve]"')
from fastapi.testclient import TestClient  # noqa: E402

from reasonrank import ReasoningReranker  # noqa: E402
from reasonrank.serve import ServeConfig, create_app  # noqa: E402

QUERY = "what is bm25"
TEXTS = ["BM25 is a ranking function.", "Cats sleep a lot.", "Lucene uses BM25.", "Pasta needs salted water.",
         "Inverted indexes map terms to documents."]


@pytest.fixture(scope="module")
def explaining(tiny_model_dir: Path) -> ReasoningReranker:
    return ReasoningReranker(str(tiny_model_dir), mode="direct", dtype="float32", explain_top_k=2, max_new_tokens=12)


def test_top_results_are_explained_and_scores_stay_direct(explaining: ReasoningReranker) -> None:
    want = explaining.rank(QUERY, TEXTS)  # the in-process reference: direct ranks, top 2 explained
    with TestClient(create_app(explaining, ServeConfig(model_name="tiny"))) as client:
        body = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS}).json()
        top1 = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS, "top_n": 1}).json()
        off = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS,
                                              "return_explanations": False}).json()
    rows = body["results"]
    assert [r["index"] for r in rows] == [w.index for w in want]
    assert [r["relevance_score"] for r in rows] == pytest.approx([w.score for w in want], abs=1e-6)
    assert [r["explanation"] for r in rows] == [w.explanation for w in want]
    assert rows[0]["explanation"] is not None and all(r["explanation"] is None for r in rows[2:])
    assert len(top1["results"]) == 1
    assert top1["results"][0]["explanation"] == want[0].explanation
    assert all("explanation" not in r for r in off["results"])


def test_explain_top_k_needs_direct_mode(tiny_model_dir: Path) -> None:
    from reasonrank.cli import main

    assert main(["serve", "--model", str(tiny_model_dir), "--mode", "reasoning", "--explain-top-k", "2"]) == 2
