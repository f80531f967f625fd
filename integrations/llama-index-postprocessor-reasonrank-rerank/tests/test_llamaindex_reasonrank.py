"""ReasoningRerank inside real LlamaIndex query engines (retriever + postprocessor, response_mode no_text)."""

from __future__ import annotations

import asyncio
import copy
import pickle
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload, LlamaDebugHandler
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.reasonrank_rerank import EMPTY_KEY, METADATA_KEYS, ReasoningRerank

from reasonrank import ReasoningReranker

QUERY = "what is bm25"
TEXTS = [
    "BM25 is a ranking function used by search engines.",
    "The cat sat on the mat.",
    "Photosynthesis converts light into chemical energy.",
    "Python is a programming language.",
]


def _engine(rerank: ReasoningRerank, callback_manager: CallbackManager | None = None):
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    retriever = index.as_retriever(similarity_top_k=len(nodes))
    # response_mode "no_text" (NoText ignores from_args' llm, so pass it an offline MockLLM directly)
    engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[rerank],
        response_synthesizer=NoText(llm=MockLLM()),
        callback_manager=callback_manager,
    )
    return retriever, engine


def _assert_matches_core(
    out: list[NodeWithScore], retrieved: list[NodeWithScore], core: ReasoningReranker, top_n: int
) -> None:
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    expected = core.rank(QUERY, texts, top_k=top_n)
    assert len(out) == len(expected) == min(top_n, len(retrieved))
    assert [n.node.node_id for n in out] == [retrieved[r.index].node.node_id for r in expected]
    for n, r in zip(out, expected, strict=True):
        assert type(n.score) is float and n.score == pytest.approx(r.score, abs=1e-6)
        assert n.node.metadata["reasonrank_label"] == r.label
        assert n.node.metadata["reasonrank_explanation"] == r.explanation
        assert n.node.metadata["reasonrank_parse_ok"] is r.parse_ok
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)


class _Collect(BaseEventHandler):
    events: list[Any] = []

    @classmethod
    def class_name(cls) -> str:
        return "ReasonrankTestCollect"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.events.append(event)


@pytest.fixture
def rerank_events():
    root = get_dispatcher()
    handler = _Collect(events=[])
    root.add_event_handler(handler)
    yield handler.events
    root.event_handlers.remove(handler)


def test_query_engine_sync_matches_core_with_events(tiny_direct, rerank_events):
    debug = LlamaDebugHandler()
    rerank = ReasoningRerank(reranker=tiny_direct, top_n=3, keep_retrieval_score=True)
    retriever, engine = _engine(rerank, CallbackManager([debug]))
    retrieved = retriever.retrieve(QUERY)
    response = engine.query(QUERY)
    _assert_matches_core(response.source_nodes, retrieved, tiny_direct, top_n=3)
    by_id = {n.node.node_id: n.score for n in retrieved}
    for n in response.source_nodes:
        assert n.node.metadata["retrieval_score"] == by_id[n.node.node_id]
        # reranker metadata never leaks into the text sent to LLMs/embedders
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            assert "reasonrank" not in n.node.get_content(metadata_mode=mode)
            assert "retrieval_score" not in n.node.get_content(metadata_mode=mode)
    assert all("reasonrank_label" not in n.node.metadata for n in retrieved)  # inputs are not modified

    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1
    start, end = pairs[0]
    assert start.payload[EventPayload.QUERY_STR] == QUERY and start.payload[EventPayload.TOP_K] == 3
    assert len(start.payload[EventPayload.NODES]) == len(TEXTS)
    assert end.payload[EventPayload.NODES] == response.source_nodes

    starts = [e for e in rerank_events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in rerank_events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1
    assert (
        starts[0].top_n == 3 and starts[0].model_name == rerank.model and len(starts[0].nodes) == len(TEXTS)
    )
    assert [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in response.source_nodes]


def test_query_engine_async_equals_sync(tiny_direct, rerank_events):
    rerank = ReasoningRerank(reranker=tiny_direct, top_n=2)
    _, engine = _engine(rerank)
    sync = engine.query(QUERY).source_nodes
    aresp = asyncio.run(engine.aquery(QUERY)).source_nodes
    assert [(n.node.node_id, n.score, n.node.metadata) for n in aresp] == [
        (n.node.node_id, n.score, n.node.metadata) for n in sync
    ]
    assert sum(isinstance(e, ReRankEndEvent) for e in rerank_events) == 2


def test_lazy_model_reasoning_mode(tiny_model_dir):
    rerank = ReasoningRerank(
        model=str(tiny_model_dir), mode="reasoning", top_n=2, reranker_kwargs={"max_new_tokens": 12}
    )
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.5) for t in TEXTS[:3]]
    out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    core = ReasoningReranker(str(tiny_model_dir), mode="reasoning", max_new_tokens=12)
    _assert_matches_core(out, nodes, core, top_n=2)
    assert all(isinstance(n.node.metadata["reasonrank_explanation"], str) for n in out)
    assert rerank._get_reranker() is rerank._get_reranker()  # built once


def test_bad_inputs(tiny_direct):
    rerank = ReasoningRerank(reranker=tiny_direct, top_n=5)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    assert asyncio.run(rerank.apostprocess_nodes([], query_str=QUERY)) == []
    node = TextNode(text=TEXTS[0])
    dup = rerank.postprocess_nodes(
        [NodeWithScore(node=node, score=0.1), NodeWithScore(node=node, score=0.9)], query_str=QUERY
    )
    assert len(dup) == 2 and dup[0].score == dup[1].score
    assert dup[0].node.metadata == dup[1].node.metadata
    with pytest.raises(ValueError, match="query bundle"):
        rerank.postprocess_nodes([NodeWithScore(node=node)])


def test_empty_nodes_rank_last_with_score_zero(tiny_direct):
    """An empty node does not abort the query (LlamaIndex's own rerankers score it): it ranks last, flagged."""
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5)
             for i, t in enumerate([TEXTS[0], "", TEXTS[1], " \n\t", TEXTS[2]])]
    out = ReasoningRerank(reranker=tiny_direct, top_n=5).postprocess_nodes(nodes, query_str=QUERY)
    _assert_matches_core(out[:3], [nodes[0], nodes[2], nodes[4]], tiny_direct, top_n=3)
    assert all(EMPTY_KEY not in n.node.metadata for n in out[:3])
    assert [n.node.node_id for n in out[3:]] == ["n1", "n3"]  # input order
    for n in out[3:]:
        assert type(n.score) is float and n.score == 0.0
        assert n.node.metadata == {"reasonrank_label": 0, "reasonrank_explanation": None,
                                   "reasonrank_parse_ok": True, EMPTY_KEY: True}
        assert "reasonrank" not in n.node.get_content(metadata_mode=MetadataMode.LLM)
    assert nodes[1].node.metadata == {}  # inputs untouched
    # top_n counts empty nodes as the lowest-ranked
    for top_n in (3, 4):
        got = ReasoningRerank(reranker=tiny_direct, top_n=top_n).postprocess_nodes(nodes, query_str=QUERY)
        assert [n.node.node_id for n in got] == [n.node.node_id for n in out[:top_n]]
    aout = asyncio.run(ReasoningRerank(reranker=tiny_direct, top_n=5).apostprocess_nodes(nodes, query_str=QUERY))
    assert [(n.node.node_id, n.score, n.node.metadata) for n in aout] == [
        (n.node.node_id, n.score, n.node.metadata) for n in out
    ]
    only_empty = ReasoningRerank(reranker=tiny_direct, top_n=1).postprocess_nodes(nodes[1:2], query_str=QUERY)
    assert [(n.node.node_id, n.score) for n in only_empty] == [("n1", 0.0)]
    with pytest.raises(ValueError, match="query is empty"):  # the query is still checked
        ReasoningRerank(reranker=tiny_direct).postprocess_nodes(nodes[1:2], query_str=" ")


def test_given_reranker_settings_are_reported_and_conflicts_rejected(tiny_direct, tiny_model_dir):
    rerank = ReasoningRerank(reranker=tiny_direct, model=str(tiny_model_dir), mode="direct")  # agreeing: fine
    assert (rerank.model, rerank.mode) == (str(tiny_model_dir), "direct")
    for conflict in ({"mode": "reasoning"}, {"model": "other/model"}):  # its message: tests/test_integration_helpers.py
        with pytest.raises(ValueError, match=f"{next(iter(conflict))}=.* conflicts with the given reranker"):
            ReasoningRerank(reranker=tiny_direct, **conflict)


def test_deepcopy_shares_the_loaded_reranker(tiny_direct, tiny_model_dir):
    rerank = ReasoningRerank(reranker=tiny_direct, top_n=2, reranker_kwargs={"batch_size": 2})
    clone = copy.deepcopy(rerank)
    assert clone._get_reranker() is tiny_direct  # shared by reference, not copied
    assert clone.reranker_kwargs == rerank.reranker_kwargs and clone.reranker_kwargs is not rerank.reranker_kwargs
    _, engine = _engine(rerank)
    _, clone_engine = _engine(clone)
    assert [(n.node.node_id, n.score) for n in clone_engine.query(QUERY).source_nodes] == [
        (n.node.node_id, n.score) for n in engine.query(QUERY).source_nodes
    ]
    lazy = ReasoningRerank(model=str(tiny_model_dir), mode="direct", top_n=2)
    cold = copy.deepcopy(lazy)  # before the first use: each loads its own on first use
    nodes = [NodeWithScore(node=TextNode(text=t)) for t in TEXTS[:3]]
    lazy.postprocess_nodes(nodes, query_str=QUERY)
    warm = copy.deepcopy(lazy)  # after: the loaded model is shared, not reloaded
    assert warm._get_reranker() is lazy._get_reranker()
    assert cold._get_reranker() is not lazy._get_reranker()
    assert pickle.loads(pickle.dumps(lazy)).model_dump() == lazy.model_dump()  # pickling keeps the settings


@pytest.mark.slow
def test_smollm2_shared_reranker(smollm2_direct):
    a = ReasoningRerank(reranker=smollm2_direct, top_n=2)
    b = ReasoningRerank(reranker=smollm2_direct, top_n=3)
    assert a._get_reranker() is b._get_reranker() is smollm2_direct
    nodes = [NodeWithScore(node=TextNode(text=t)) for t in TEXTS[:3]]
    out = a.postprocess_nodes(nodes, QueryBundle(QUERY))
    _assert_matches_core(out, nodes, smollm2_direct, top_n=2)
    assert set(METADATA_KEYS) <= set(out[0].node.metadata)
