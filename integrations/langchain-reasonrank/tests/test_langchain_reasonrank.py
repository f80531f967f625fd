"""langchain_reasonrank.ReasoningReranker inside a real ContextualCompressionRetriever (langchain-classic)."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_reasonrank import EMPTY_KEY
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


def test_empty_documents_rank_last_with_score_zero(tiny_direct):
    """An empty document does not abort the call (LangChain's own rerankers score it): it ranks last, flagged."""
    docs = [Document(page_content=t, id=f"d{i}", metadata={"i": i})
            for i, t in enumerate([TEXTS[0], "", TEXTS[1], "  \n", TEXTS[2]])]
    judged = [docs[0], docs[2], docs[4]]
    out = ReasoningRerankCompressor(reranker=tiny_direct, top_n=None).compress_documents(docs, QUERY)
    _assert_matches_core(out[:3], judged, tiny_direct, top_n=None)
    assert all(EMPTY_KEY not in d.metadata for d in out[:3])
    assert [d.id for d in out[3:]] == ["d1", "d3"]  # input order
    for d in out[3:]:
        assert d.metadata == {"i": int(d.id[1:]), "relevance_score": 0.0, "reasonrank_label": 0,
                              "reasonrank_explanation": None, "reasonrank_parse_ok": True, EMPTY_KEY: True}
        assert type(d.metadata["relevance_score"]) is float
    assert docs[1].metadata == {"i": 1}  # inputs untouched
    for top_n in (3, 4):  # top_n counts empty documents as the lowest-ranked
        got = ReasoningRerankCompressor(reranker=tiny_direct, top_n=top_n).compress_documents(docs, QUERY)
        assert [d.id for d in got] == [d.id for d in out[:top_n]]
    aout = asyncio.run(ReasoningRerankCompressor(reranker=tiny_direct, top_n=None).acompress_documents(docs, QUERY))
    assert [(d.id, d.metadata) for d in aout] == [(d.id, d.metadata) for d in out]
    with pytest.raises(ValueError, match="query is empty"):  # the query is still checked
        ReasoningRerankCompressor(reranker=tiny_direct).compress_documents(docs[1:2], " ")


def test_given_reranker_settings_are_reported_and_conflicts_rejected(tiny_direct, tiny_model_dir):
    comp = ReasoningRerankCompressor(reranker=tiny_direct, top_n=2)
    assert comp.model_dump() == {"model": str(tiny_model_dir), "mode": "direct", "top_n": 2, "reranker_kwargs": {}}
    agreeing = ReasoningRerankCompressor(reranker=tiny_direct, model=str(tiny_model_dir), mode="direct")
    assert agreeing.model_dump() == {**comp.model_dump(), "top_n": 3}
    for conflict in ({"mode": "reasoning"}, {"model": "other/model"}):  # its message: tests/test_integration_helpers.py
        with pytest.raises(ValueError, match=f"{next(iter(conflict))}=.* conflicts with the given reranker"):
            ReasoningRerankCompressor(reranker=tiny_direct, **conflict)


def test_deepcopy_shares_the_reranker_and_pickle_keeps_the_settings(tiny_direct, tiny_model_dir):
    retriever = ContextualCompressionRetriever(
        base_compressor=ReasoningRerankCompressor(reranker=tiny_direct, top_n=2), base_retriever=_base_retriever()
    )
    clone = copy.deepcopy(retriever)
    assert clone.base_compressor is not retriever.base_compressor
    assert clone.base_compressor.reranker is tiny_direct  # shared by reference, not copied or reloaded
    assert [(d.id, d.metadata) for d in clone.invoke(QUERY)] == [(d.id, d.metadata) for d in retriever.invoke(QUERY)]
    with pytest.raises(TypeError, match=r"reranker=.*cannot be pickled.*model="):
        pickle.dumps(retriever.base_compressor)

    comp = ReasoningRerankCompressor(model=str(tiny_model_dir), mode="direct", top_n=2)
    assert pickle.loads(pickle.dumps(comp)).model_dump() == comp.model_dump()  # not loaded yet
    docs = [Document(page_content=t) for t in TEXTS]
    out = comp.compress_documents(docs, QUERY)
    assert copy.deepcopy(comp).reranker is comp.reranker  # loaded: the copy reuses it
    restored = pickle.loads(pickle.dumps(comp))  # the settings travel, not the loaded model
    assert restored.reranker is None and restored.model_dump() == comp.model_dump()
    assert restored.compress_documents(docs, QUERY) == out
    assert restored.reranker is not comp.reranker
