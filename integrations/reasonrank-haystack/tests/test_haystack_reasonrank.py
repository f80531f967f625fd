"""ReasoningRanker inside real Haystack pipelines (InMemoryBM25Retriever -> ranker), incl. YAML dump/load."""

from __future__ import annotations

import asyncio

import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret
from haystack_integrations.components.rankers.reasonrank import ReasoningRanker

from reasonrank import ReasoningReranker

QUERY = "what is bm25"
TEXTS = [
    "BM25 is a ranking function used by search engines.",
    "The cat is on the mat.",
    "Photosynthesis is how plants turn light into chemical energy.",
    "Python is a programming language.",
]
TYPE = "haystack_integrations.components.rankers.reasonrank.ranker.ReasoningRanker"


def _pipeline(ranker: ReasoningRanker) -> Pipeline:
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t, meta={"title": f"doc {i}"}) for i, t in enumerate(TEXTS)])
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=len(TEXTS)))
    pipe.add_component("ranker", ranker)
    pipe.connect("retriever.documents", "ranker.documents")
    return pipe


def _run(pipe: Pipeline) -> tuple[list[Document], list[Document]]:
    out = pipe.run(
        {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}, include_outputs_from={"retriever"}
    )
    return out["retriever"]["documents"], out["ranker"]["documents"]


def _assert_matches_core(
    out: list[Document], docs: list[Document], texts: list[str], core: ReasoningReranker, top_k: int
) -> None:
    expected = core.rank(QUERY, texts, top_k=top_k)
    assert [d.id for d in out] == [docs[r.index].id for r in expected]
    for d, r in zip(out, expected, strict=True):
        assert type(d.score) is float and d.score == pytest.approx(r.score, abs=1e-6)
        assert d.content == docs[r.index].content
        assert d.meta == {
            **docs[r.index].meta,
            "reasonrank_label": r.label,
            "reasonrank_explanation": r.explanation,
            "reasonrank_parse_ok": r.parse_ok,
        }
    assert [d.score for d in out] == sorted((d.score for d in out), reverse=True)


def test_pipeline_matches_core_and_async(tiny_direct):
    ranker = ReasoningRanker(reranker=tiny_direct, top_k=3)
    pipe = _pipeline(ranker)
    retrieved, ranked = _run(pipe)
    assert len(retrieved) == len(TEXTS)
    _assert_matches_core(ranked, retrieved, [d.content for d in retrieved], tiny_direct, top_k=3)
    assert all("reasonrank_label" not in d.meta for d in retrieved)  # inputs untouched
    data = {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}
    aranked = asyncio.run(pipe.run_async(data))["ranker"]["documents"]
    assert aranked == ranked
    direct = asyncio.run(ranker.run_async(query=QUERY, documents=retrieved, top_k=2))["documents"]
    assert direct == ranker.run(query=QUERY, documents=retrieved, top_k=2)["documents"] == ranked[:2]


def test_yaml_round_trip_builds_working_shared_component(tiny_model_dir, monkeypatch):
    monkeypatch.delenv("REASONRANK_TEST_API_KEY", raising=False)
    ranker = ReasoningRanker(
        model=str(tiny_model_dir),
        mode="direct",
        device=ComponentDevice.from_str("cpu"),
        api_key=Secret.from_env_var("REASONRANK_TEST_API_KEY", strict=False),
        top_k=2,
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
        batch_size=2,
        reranker_kwargs={"max_doc_tokens": 64},
    )
    d = ranker.to_dict()
    assert d["type"] == TYPE
    assert d["init_parameters"]["device"] == {"type": "single", "device": "cpu"}
    assert d["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["REASONRANK_TEST_API_KEY"],
        "strict": False,
    }
    pipe = _pipeline(ranker)
    retrieved, ranked = _run(pipe)
    texts = [f"{doc.meta['title']} | {doc.content}" for doc in retrieved]
    core = ReasoningReranker(str(tiny_model_dir), mode="direct", batch_size=2, max_doc_tokens=64)
    _assert_matches_core(ranked, retrieved, texts, core, top_k=2)

    yaml_text = pipe.dumps()
    assert TYPE in yaml_text and "REASONRANK_TEST_API_KEY" in yaml_text
    loaded = Pipeline.loads(yaml_text)  # default allowlist: haystack_integrations.* deserializes
    new = loaded.get_component("ranker")
    assert isinstance(new, ReasoningRanker) and new is not ranker
    assert new.to_dict() == d
    assert isinstance(new.device, ComponentDevice) and isinstance(new.api_key, Secret)
    loaded_retrieved, loaded_ranked = _run(loaded)
    assert [x.content for x in loaded_retrieved] == [x.content for x in retrieved]
    assert loaded_ranked == ranked
    assert new._reranker is not ranker._reranker  # no hidden sharing: share with reranker=... (opt-in)
    first = new._reranker
    new.warm_up()
    assert new._reranker is first  # idempotent


def test_reasoning_mode_threshold_and_instance_not_serializable(tiny_model_dir, tiny_direct):
    ranker = ReasoningRanker(model=str(tiny_model_dir), mode="reasoning", max_new_tokens=12, top_k=3)
    docs = [Document(content=t) for t in TEXTS[:3]]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    core = ReasoningReranker(str(tiny_model_dir), mode="reasoning", max_new_tokens=12)
    _assert_matches_core(out, docs, TEXTS[:3], core, top_k=3)
    assert all(isinstance(d.meta["reasonrank_explanation"], str) for d in out)
    cut = out[1].score
    kept = ranker.run(query=QUERY, documents=docs, score_threshold=cut)["documents"]
    assert kept == [d for d in out if d.score >= cut] and 1 <= len(kept) < len(out)
    with pytest.raises(SerializationError, match="model="):
        ReasoningRanker(reranker=tiny_direct).to_dict()


def test_bad_inputs_follow_haystack_rankers(tiny_direct):
    ranker = ReasoningRanker(reranker=tiny_direct)
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert asyncio.run(ranker.run_async(query=QUERY, documents=[])) == {"documents": []}
    with pytest.raises(ValueError, match="top_k must be > 0"):
        ReasoningRanker(reranker=tiny_direct, top_k=0)
    with pytest.raises(ValueError, match="top_k must be > 0"):
        ranker.run(query=QUERY, documents=[Document(content=TEXTS[0])], top_k=0)
    # same id -> deduplicated like Haystack's own rankers; same text under different ids -> both, same score
    same = ranker.run(query=QUERY, documents=[Document(content=TEXTS[0]), Document(content=TEXTS[0])])[
        "documents"
    ]
    assert len(same) == 1
    twins = ranker.run(
        query=QUERY, documents=[Document(id="a", content=TEXTS[0]), Document(id="b", content=TEXTS[0])]
    )["documents"]
    assert {d.id for d in twins} == {"a", "b"} and twins[0].score == twins[1].score
    assert twins[0].meta == twins[1].meta
    with pytest.raises(ValueError, match="no text"):
        ranker.run(query=QUERY, documents=[Document(content=TEXTS[0]), Document(id="empty", content=None)])
    titled = ReasoningRanker(reranker=tiny_direct, meta_fields_to_embed=["title"])
    out = titled.run(query=QUERY, documents=[Document(content=None, meta={"title": "BM25 explained"})])[
        "documents"
    ]
    assert len(out) == 1 and out[0].score == pytest.approx(
        tiny_direct.score(QUERY, ["BM25 explained"])[0].score
    )


@pytest.mark.slow
def test_smollm2_shared_reranker(smollm2_direct):
    a = ReasoningRanker(reranker=smollm2_direct, top_k=2)
    docs = [Document(content=t) for t in TEXTS[:3]]
    out = a.run(query=QUERY, documents=docs)["documents"]
    _assert_matches_core(out, docs, TEXTS[:3], smollm2_direct, top_k=2)
    b = ReasoningRanker(reranker=smollm2_direct)
    b.warm_up()
    assert b._reranker is a._reranker is smollm2_direct
