"""langchain_reasonrank.ReasoningReranker inside a real ContextualCompressionRetriever (langchain-classic)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_reasonrank import ReasoningReranker as ReasoningRerankCompressor

from reasonrank import ReasoningReranker

QUERY = "what is bm25"
TEXTS = [
    "BM25 is a ranking function used by search engines.",
    "The cat sat on the mat.",
    "Photosynthesis converts light into chemical energy.",
    "Python is a programming language.",
]


def _base_retriever():
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents(
        [Document(page_content=t, metadata={"source": f"s{i}"}, id=f"d{i}") for i, t in enumerate(TEXTS)]
    )
    return store.as_retriever(search_kwargs={"k": len(TEXTS)})


def _assert_matches_core(
    out: list[Document], retrieved: list[Document], core: ReasoningReranker, top_n: int | None
) -> None:
    expected = core.rank(QUERY, [d.page_content for d in retrieved], top_k=top_n)
    assert len(out) == len(expected)
    assert [d.id for d in out] == [retrieved[r.index].id for r in expected]
    for d, r in zip(out, expected, strict=True):
        src = retrieved[r.index]
        assert d.page_content == src.page_content
        added = {"relevance_score", "reasonrank_label", "reasonrank_explanation", "reasonrank_parse_ok"}
        assert {k: v for k, v in d.metadata.items() if k not in added} == src.metadata
        assert type(d.metadata["relevance_score"]) is float
        assert d.metadata["relevance_score"] == pytest.approx(r.score, abs=1e-6)
        assert d.metadata["reasonrank_label"] == r.label
        assert d.metadata["reasonrank_explanation"] == r.explanation
        assert d.metadata["reasonrank_parse_ok"] is r.parse_ok
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)


def test_compression_retriever_sync_and_async(tiny_direct):
    base = _base_retriever()
    retrieved = base.invoke(QUERY)
    assert len(retrieved) == len(TEXTS)
    retriever = ContextualCompressionRetriever(
        base_compressor=ReasoningRerankCompressor(reranker=tiny_direct, top_n=3), base_retriever=base
    )
    out = retriever.invoke(QUERY)
    _assert_matches_core(out, retrieved, tiny_direct, top_n=3)
    assert all("relevance_score" not in d.metadata for d in retrieved)  # documents are copied
    aout = asyncio.run(retriever.ainvoke(QUERY))
    assert [(d.id, d.page_content, d.metadata) for d in aout] == [
        (d.id, d.page_content, d.metadata) for d in out
    ]


def test_top_n_none_returns_all_and_direct_async(tiny_direct):
    comp = ReasoningRerankCompressor(reranker=tiny_direct, top_n=None)
    docs = [Document(page_content=t) for t in TEXTS]
    out = asyncio.run(comp.acompress_documents(docs, QUERY))
    _assert_matches_core(out, docs, tiny_direct, top_n=None)
    with pytest.raises(ValueError):
        ReasoningRerankCompressor(reranker=tiny_direct, top_n=0)


def test_lazy_model_reasoning_mode(tiny_model_dir):
    comp = ReasoningRerankCompressor(
        model=str(tiny_model_dir), mode="reasoning", top_n=2, reranker_kwargs={"max_new_tokens": 12}
    )
    assert comp.reranker is None
    docs = [Document(page_content=t) for t in TEXTS[:3]]
    out = comp.compress_documents(docs, QUERY)
    core = ReasoningReranker(str(tiny_model_dir), mode="reasoning", max_new_tokens=12)
    _assert_matches_core(out, docs, core, top_n=2)
    built = comp.reranker
    assert isinstance(built, ReasoningReranker) and built.mode == "reasoning"
    comp.compress_documents(docs, QUERY)
    assert comp.reranker is built  # loaded once
    assert "reranker" not in comp.model_dump()


def test_explain_top_k_reaches_the_metadata(tiny_model_dir):
    """Direct ranking with explanations for the top results only (the core's explain_top_k)."""
    comp = ReasoningRerankCompressor(model=str(tiny_model_dir), mode="direct", top_n=3,
                                     reranker_kwargs={"explain_top_k": 1, "max_new_tokens": 12})
    docs = [Document(page_content=t) for t in TEXTS[:3]]
    out = comp.compress_documents(docs, QUERY)
    core = ReasoningReranker(str(tiny_model_dir), mode="direct", explain_top_k=1, max_new_tokens=12)
    want = core.rank(QUERY, TEXTS[:3], top_k=3)
    assert [d.metadata["reasonrank_explanation"] for d in out] == [r.explanation for r in want]
    assert want[0].raw_output is not None and want[1].raw_output is None


def test_bad_inputs(tiny_direct):
    comp = ReasoningRerankCompressor(reranker=tiny_direct, top_n=5)
    assert comp.compress_documents([], QUERY) == []
    assert asyncio.run(comp.acompress_documents([], QUERY)) == []
    doc = Document(page_content=TEXTS[0], metadata={"k": [1]})
    dup = comp.compress_documents([doc, doc], QUERY)
    assert len(dup) == 2 and dup[0].metadata == dup[1].metadata and dup[0] is not dup[1]
    dup[0].metadata["k"].append(2)
    assert doc.metadata["k"] == [1]  # metadata is deep-copied
    with pytest.raises(ValueError, match=r"docs\[1\] has empty text"):
        comp.compress_documents([doc, Document(page_content="")], QUERY)
    with pytest.raises(ValueError, match="query is empty"):
        comp.compress_documents([doc], "  ")


@pytest.mark.slow
def test_smollm2_shared_reranker(smollm2_direct):
    a = ReasoningRerankCompressor(reranker=smollm2_direct, top_n=2)
    b = ReasoningRerankCompressor(reranker=smollm2_direct, top_n=1)
    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(TEXTS[:3])]
    out = a.compress_documents(docs, QUERY)
    _assert_matches_core(out, docs, smollm2_direct, top_n=2)
    assert b.reranker is a.reranker is smollm2_direct
