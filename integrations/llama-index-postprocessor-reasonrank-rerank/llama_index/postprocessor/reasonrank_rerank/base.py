"""LlamaIndex node postprocessor over :class:`reasonrank.ReasoningReranker` (translation only)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

import reasonrank
from reasonrank import RerankResult
from reasonrank.integration import (
    EMPTY_KEY,
    METADATA_KEYS,
    deepcopy_memo,
    instance_settings,
    judged_texts,
    result_metadata,
    with_empty_last,
)

__all__ = ["ReasoningRerank", "METADATA_KEYS", "EMPTY_KEY"]

dispatcher = get_dispatcher(__name__)


class ReasoningRerank(BaseNodePostprocessor):
    """Rerank nodes with a reasoning reranker: a small LM explains, then grades each node's relevance.

    Returned nodes carry ``score`` (a float in [0, 1]) and the metadata ``reasonrank_label``,
    ``reasonrank_explanation`` and ``reasonrank_parse_ok`` (kept out of the text sent to LLMs and embedders).
    The node is a copy; the retrieved node is not modified. A node with empty text is not judged: it ranks
    last, with score 0, label 0 and ``metadata["reasonrank_empty"] = True``.

    ``copy.deepcopy`` copies the settings and shares the reranker by reference (a loaded model is reused,
    neither reloaded nor duplicated in memory); a copy made before the first use loads its own on first use.

    Args:
        top_n: Number of nodes to return.
        model: Model for ``reasonrank.ReasoningReranker`` (hub id, local dir, ``.gguf``, ``"smollm2-local"``).
        mode: ``"reasoning"`` (explain, then grade) or ``"direct"`` (grade only); None: the model's own
            (``reasonrank.json``; the shipped default model is direct).
        keep_retrieval_score: Keep the retriever's score in ``metadata["retrieval_score"]``.
        reranker: A ready ``reasonrank.ReasoningReranker`` to use (and share); built lazily when None.
            ``model`` and ``mode`` then report its settings; a different explicit one is a ``ValueError``.
        reranker_kwargs: More ``ReasoningReranker`` options (backend, batch_size, max_new_tokens,
            template, ...).
        callback_manager: LlamaIndex callback manager.

    Example:
        >>> from llama_index.postprocessor.reasonrank_rerank import ReasoningRerank   # doctest: +SKIP
        >>> rerank = ReasoningRerank(model="smollm2-local", mode="direct", top_n=3)   # doctest: +SKIP
        >>> engine = index.as_query_engine(node_postprocessors=[rerank])               # doctest: +SKIP
    """

    model: str = Field(default=reasonrank.DEFAULT_MODEL, description="reasonrank model name or path.")
    mode: Literal["reasoning", "direct"] | None = Field(
        default=None, description="Judging mode; None: the model's own (reasonrank.json).")
    top_n: int = Field(default=5, ge=1, description="Number of nodes to return sorted by score.")
    keep_retrieval_score: bool = Field(default=False, description="Keep the retrieval score in metadata.")
    reranker_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Further ReasoningReranker options."
    )

    _reranker: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self,
        *,
        top_n: int = 5,
        model: str | None = None,
        mode: Literal["reasoning", "direct"] | None = None,
        keep_retrieval_score: bool = False,
        reranker: reasonrank.ReasoningReranker | None = None,
        reranker_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if reranker is not None:
            own = instance_settings(reranker, model=model, mode=mode)
            model, mode = own["model"], own["mode"]  # type: ignore[assignment]
        super().__init__(
            top_n=top_n,
            model=reasonrank.DEFAULT_MODEL if model is None else model,
            mode=mode,
            keep_retrieval_score=keep_retrieval_score,
            reranker_kwargs=dict(reranker_kwargs or {}),
            callback_manager=callback_manager or CallbackManager([]),
        )
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "ReasoningRerank"

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ReasoningRerank:
        return super().__deepcopy__(deepcopy_memo(memo, reranker=self._reranker, lock=self._lock))

    def _get_reranker(self) -> reasonrank.ReasoningReranker:
        with self._lock:
            if self._reranker is None:
                self._reranker = reasonrank.ReasoningReranker(
                    self.model, mode=self.mode, **self.reranker_kwargs
                )
        return self._reranker

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            results = self._get_reranker().rank(query, judged_texts(texts), top_k=self.top_n)
            new_nodes = self._to_nodes(nodes, with_empty_last(results, texts, self.top_n))
            event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = self._prepare(nodes, query_bundle)
        if not nodes:
            return []
        rr = self._reranker if self._reranker is not None else await asyncio.to_thread(self._get_reranker)
        with self.callback_manager.event(CBEventType.RERANKING, payload=self._payload(nodes, query)) as event:
            results = await rr.arank(query, judged_texts(texts), top_k=self.top_n)
            new_nodes = self._to_nodes(nodes, with_empty_last(results, texts, self.top_n))
            event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes

    # ------------------------------------------------------------------ translation
    def _prepare(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        if query_bundle is None:
            raise ValueError("Missing query bundle: pass query_bundle=QueryBundle(query) or query_str=query")
        if nodes:
            dispatcher.event(
                ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model)
            )
        return query_bundle.query_str, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    def _payload(self, nodes: list[NodeWithScore], query: str) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }

    def _to_nodes(self, nodes: list[NodeWithScore], results: list[RerankResult]) -> list[NodeWithScore]:
        out = []
        for r in results:
            src = nodes[r.index]
            added = result_metadata(r)
            meta = {**src.node.metadata, **added}
            keys = list(added)
            if self.keep_retrieval_score:
                meta["retrieval_score"] = src.score
                keys.append("retrieval_score")
            node = src.node.model_copy(
                update={
                    "metadata": meta,
                    "excluded_embed_metadata_keys": list(
                        dict.fromkeys([*src.node.excluded_embed_metadata_keys, *keys])
                    ),
                    "excluded_llm_metadata_keys": list(
                        dict.fromkeys([*src.node.excluded_llm_metadata_keys, *keys])
                    ),
                }
            )
            out.append(NodeWithScore(node=node, score=float(r.score)))
        return out
