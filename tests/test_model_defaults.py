"""One rule for a model's defaults (reasonrank.metadata.model_defaults): a direct-mode, binary-scale model
directory is run in direct mode with two labels by the API, the CLI and each framework adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.cli import main

QUERY = "what is bm25"
TEXTS = ["BM25 is a ranking function.", "Cats sleep a lot.", "Lucene uses BM25."]


@pytest.fixture(scope="module")
def direct_binary(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("trained") / "direct-binary"
    shutil.copytree(tiny_model_dir, model)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "label_scale": [0, 1],
                                                        "template": "prorank"}))
    return model


def _is_direct_binary(rr: ReasoningReranker) -> None:
    assert (rr.mode, rr.labels, rr.template.name) == ("direct", (0, 1), "prorank")


def test_api(direct_binary: Path) -> None:
    _is_direct_binary(ReasoningReranker(str(direct_binary)))


def test_a_reranker_on_a_shared_backend_keeps_the_models_defaults(direct_binary: Path) -> None:
    """ReasoningReranker(backend=other.backend) reads the card of the model that backend serves: before, it fell
    back to the built-in defaults (reasoning, labels 0-2) and scored the shipped model with the wrong prompt."""
    own = ReasoningReranker(str(direct_binary), device="cpu", fusion_weight=None)
    shared = ReasoningReranker(backend=own.backend)
    _is_direct_binary(shared)
    assert [r.score for r in shared.score(QUERY, TEXTS)] == [r.score for r in own.score(QUERY, TEXTS)]
    explicit = ReasoningReranker(backend=own.backend, mode="reasoning", label_scale=2)  # explicit still wins
    assert (explicit.mode, explicit.labels, explicit.template.name) == ("reasoning", (0, 1, 2), "interank")
    carded = ReasoningReranker(str(direct_binary), device="cpu")
    carded.backend.model_meta = {**carded.backend.model_meta, "fusion_weight": 0.3}
    assert ReasoningReranker(backend=carded.backend).fusion_weight == 0.3


def test_cli(direct_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(t) for t in TEXTS) + "\n")
    assert main(["rerank", "--model", str(direct_binary), "--query", QUERY, "--docs", str(docs), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(len(r["label_probs"]) == 2 and r["explanation"] is None for r in rows)


def test_langchain(direct_binary: Path) -> None:
    lc = pytest.importorskip("langchain_reasonrank")
    from langchain_core.documents import Document

    comp = lc.ReasoningReranker(model=str(direct_binary), top_n=3)
    out = comp.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)
    _is_direct_binary(comp._get_reranker())
    assert len(out) == 3 and all(d.metadata["reasonrank_explanation"] is None for d in out)


def test_llama_index(direct_binary: Path) -> None:
    li = pytest.importorskip("llama_index.postprocessor.reasonrank_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    post = li.ReasoningRerank(model=str(direct_binary), top_n=3)
    nodes = post.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in TEXTS], QueryBundle(QUERY))
    _is_direct_binary(post._get_reranker())
    assert len(nodes) == 3


def test_haystack(direct_binary: Path) -> None:
    hs = pytest.importorskip("haystack_integrations.components.rankers.reasonrank")
    from haystack import Document

    ranker = hs.ReasoningRanker(model=str(direct_binary), top_k=3)
    ranker.warm_up()
    out = ranker.run(query=QUERY, documents=[Document(content=t) for t in TEXTS])["documents"]
    _is_direct_binary(ranker._reranker)
    assert len(out) == 3
