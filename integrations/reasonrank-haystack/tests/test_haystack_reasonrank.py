"""ReasoningRanker inside real Haystack pipelines (InMemoryBM25Retriever -> ranker), incl. YAML dump/load."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import haystack
import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import SerializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.utils import ComponentDevice, Secret
from haystack_integrations.components.rankers.reasonrank import EMPTY_KEY, ReasoningRanker

import reasonrank.backends
from reasonrank import ReasoningReranker, available_backends

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


def test_documents_without_text_rank_last_with_score_zero(tiny_direct):
    """A Document without text does not abort the run (Haystack's own rankers score it): it ranks last, flagged."""
    docs = [Document(id=f"d{i}", content=c, meta={"i": i})
            for i, c in enumerate([TEXTS[0], None, TEXTS[1], " \n", TEXTS[2]])]
    judged = [docs[0], docs[2], docs[4]]
    ranker = ReasoningRanker(reranker=tiny_direct, top_k=5)
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    _assert_matches_core(out[:3], judged, [d.content for d in judged], tiny_direct, top_k=3)
    assert [d.id for d in out[3:]] == ["d1", "d3"]  # input order
    for d in out[3:]:
        assert type(d.score) is float and d.score == 0.0
        assert d.meta == {"i": int(d.id[1:]), "reasonrank_label": 0, "reasonrank_explanation": None,
                          "reasonrank_parse_ok": True, EMPTY_KEY: True}
    assert docs[1].meta == {"i": 1} and docs[1].score is None  # inputs untouched
    for top_k in (3, 4):  # top_k counts empty Documents as the lowest-ranked
        assert [d.id for d in ranker.run(query=QUERY, documents=docs, top_k=top_k)["documents"]] == [
            d.id for d in out[:top_k]
        ]
    kept = ranker.run(query=QUERY, documents=docs, score_threshold=1e-9)["documents"]
    assert [d.id for d in kept] == [d.id for d in out[:3]]
    assert asyncio.run(ranker.run_async(query=QUERY, documents=docs))["documents"] == out
    with pytest.raises(ValueError, match="query is empty"):  # the query is still checked
        ranker.run(query=" ", documents=docs[1:2])


def test_given_reranker_settings_are_reported_and_conflicts_rejected(tiny_direct, tiny_model_dir):
    ranker = ReasoningRanker(reranker=tiny_direct)
    assert (ranker.model, ranker.backend, ranker.mode) == (str(tiny_model_dir), "transformers", "direct")
    agreeing = ReasoningRanker(reranker=tiny_direct, model=str(tiny_model_dir), backend="transformers", mode="direct")
    assert (agreeing.model, agreeing.backend, agreeing.mode) == (ranker.model, ranker.backend, ranker.mode)
    for conflict in ({"mode": "reasoning"}, {"model": "other/model"}, {"backend": "openai"}):
        with pytest.raises(ValueError, match=f"{next(iter(conflict))}=.* conflicts with the given reranker"):
            ReasoningRanker(reranker=tiny_direct, **conflict)  # its message: tests/test_integration_helpers.py
    for unused in ({"device": ComponentDevice.from_str("cpu")}, {"api_key": Secret.from_token("k")},
                   {"batch_size": 4}, {"max_new_tokens": 32}, {"reranker_kwargs": {"max_doc_tokens": 64}}):
        with pytest.raises(ValueError, match=f"{next(iter(unused))} would be ignored: the given reranker is already"):
            ReasoningRanker(reranker=tiny_direct, **unused)


def test_invalid_mode_or_backend_fails_at_init_naming_the_choices():
    with pytest.raises(ValueError, match=r"mode must be one of \['reasoning', 'direct'\] or None.*'fast'"):
        ReasoningRanker(mode="fast")
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; choose one of \[.*'transformers'.*\]") as err:
        ReasoningRanker(backend="torch")  # valid for Haystack's own ranker, not a reasonrank backend
    assert all(name in str(err.value) for name in available_backends())
    defaults = ReasoningRanker().to_dict()["init_parameters"]  # the defaults stay valid and serializable
    assert (defaults["model"], defaults["backend"], defaults["mode"]) == (reasonrank.DEFAULT_MODEL, "transformers",
                                                                          None)


def test_pipeline_run_async_loads_the_model_off_the_event_loop(tiny_model_dir, tiny_direct, monkeypatch):
    """Pipeline.run_async warms components up on its event loop; the model load must leave the loop running.

    The backend factory holds the load open until a concurrent task has ticked on the loop (or 60 s passed:
    the old, blocking warm-up); the test counts the ticks that happened while the model was loading.
    """
    from reasonrank.backends.hf import TransformersBackend

    loading, loaded, ticked = threading.Event(), threading.Event(), threading.Event()

    def gated_backend(model, **options):
        loading.set()
        ticked.wait(timeout=60)
        try:
            return TransformersBackend(model, **options)
        finally:
            loaded.set()

    monkeypatch.setitem(reasonrank.backends._REGISTRY, "gated-transformers", gated_backend)  # removed afterwards
    ranker = ReasoningRanker(model=str(tiny_model_dir), backend="gated-transformers", mode="direct", top_k=2)
    pipe = _pipeline(ranker)

    async def main():
        done = asyncio.Event()

        async def ticker() -> int:
            n = 0
            while not done.is_set():
                if loading.is_set() and not loaded.is_set():
                    n += 1
                    ticked.set()
                await asyncio.sleep(0.001)
            return n

        async def run():
            try:
                return await pipe.run_async(
                    {"retriever": {"query": QUERY}, "ranker": {"query": QUERY}}, include_outputs_from={"retriever"}
                )
            finally:
                done.set()

        return await asyncio.gather(ticker(), run())

    ticks_while_loading, out = asyncio.run(main())
    assert ticks_while_loading > 0
    assert isinstance(ranker._reranker.backend, TransformersBackend)
    retrieved = out["retriever"]["documents"]
    _assert_matches_core(out["ranker"]["documents"], retrieved, [d.content for d in retrieved], tiny_direct, top_k=2)


def test_docs_name_only_haystack_pipelines_that_exist():
    """docs/integrations.md names Haystack's async entry points as the installed haystack-ai has them."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "integrations.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(\w*Pipeline)\b", text))
    assert "Pipeline" in named
    assert [n for n in sorted(named) if not hasattr(haystack, n)] == []
    assert "run_async" in text and hasattr(haystack.Pipeline, "run_async")
