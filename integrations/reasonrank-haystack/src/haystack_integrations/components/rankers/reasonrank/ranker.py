"""Haystack component over :class:`reasonrank.ReasoningReranker` (translation only, no scoring of its own)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from math import inf
from typing import Any, Literal

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.errors import SerializationError
from haystack.utils import ComponentDevice, Secret, deserialize_secrets_inplace

from reasonrank import DEFAULT_MODEL, ReasoningReranker, RerankResult
from reasonrank.integration import (
    EMPTY_KEY,
    MODES,
    check_backend,
    instance_settings,
    judged_texts,
    result_metadata,
    with_empty_last,
)

__all__ = ["ReasoningRanker", "EMPTY_KEY"]

logger = logging.getLogger(__name__)


@component
class ReasoningRanker:
    """Ranks Documents with a reasoning reranker: a small LM explains, then grades each Document's relevance.

    Each output Document is a copy with ``score`` (relevance in [0, 1]) and the metadata
    ``reasonrank_label``, ``reasonrank_explanation`` and ``reasonrank_parse_ok``. Documents with the same
    id are deduplicated first (keeping the highest retrieval score), as Haystack's own rankers do. A Document
    without text (no content and no embedded meta field) is not judged: it ranks last, with score 0, label 0
    and ``meta["reasonrank_empty"] = True``.

    Usage example:
    ```python
    from haystack import Document
    from haystack_integrations.components.rankers.reasonrank import ReasoningRanker

    ranker = ReasoningRanker(model="smollm2-local", mode="direct", top_k=2)
    docs = [Document(content="Paris is the capital of France"), Document(content="Berlin is in Germany")]
    result = ranker.run(query="capital of France", documents=docs)
    print(result["documents"][0].content, result["documents"][0].meta["reasonrank_label"])
    ```
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        reranker: ReasoningReranker | None = None,
        backend: str | None = None,
        mode: Literal["reasoning", "direct"] | None = None,
        device: ComponentDevice | None = None,
        api_key: Secret | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        top_k: int = 10,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        reranker_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Create the component; the model is loaded in :meth:`warm_up`.

        Args:
            model: Model for :class:`reasonrank.ReasoningReranker` (hub id, local dir, ``.gguf``,
                ``"smollm2-local"``, or the served model name for ``backend="openai"``); None:
                ``reasonrank.DEFAULT_MODEL``, or the model of ``reranker``.
            reranker: A ready reranker to use (and share) instead of building one; such a component cannot be
                serialized. ``model``, ``backend`` and ``mode`` then report the reranker's own settings.
            backend: A registered reasonrank backend (``reasonrank.available_backends()``: ``"transformers"``,
                ``"vllm"``, ``"openai"``, ...); None: ``"transformers"``, or the backend of ``reranker``.
            mode: ``"reasoning"`` (explain, then grade) or ``"direct"`` (grade only, one forward pass); None:
                the model's own (``reasonrank.json``; the shipped default model is direct), or the mode of
                ``reranker``.
            device: Device for local backends; auto-detected when None.
            api_key: API key of a served model (``backend="openai"``), passed to the backend as ``api_key``.
            batch_size: Documents per engine batch; None: the reranker's default (8).
            max_new_tokens: Generation budget for explanation + verdict (reasoning mode); None: the reranker's
                default (256).
            top_k: The maximum number of Documents to return.
            score_threshold: Keep only Documents with at least this score.
            meta_fields_to_embed: Meta fields shown to the model before the content.
            embedding_separator: Separator between the meta fields and the content.
            reranker_kwargs: More :class:`reasonrank.ReasoningReranker` options (``template``,
                ``label_scale``, ``max_doc_tokens``, ``on_parse_error``, backend options).

        Raises:
            ValueError: ``top_k`` is not > 0; ``mode`` or ``backend`` is not one of the valid choices (the
                message lists them); ``model``, ``backend`` or ``mode`` differs from the given ``reranker``'s;
                ``device``, ``api_key``, ``batch_size``, ``max_new_tokens`` or ``reranker_kwargs`` is given with
                ``reranker`` (they configure a reranker the component builds, so they would be ignored).
        """
        if top_k <= 0:
            raise ValueError(f"top_k must be > 0, but got {top_k}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)} or None (the model's own), got {mode!r}")
        if backend is not None:
            check_backend(backend)
        if isinstance(reranker, ReasoningReranker):
            unused = [name for name, value in (("device", device), ("api_key", api_key), ("batch_size", batch_size),
                                               ("max_new_tokens", max_new_tokens),
                                               ("reranker_kwargs", reranker_kwargs)) if value not in (None, {})]
            if unused:
                raise ValueError(f"{', '.join(unused)} would be ignored: the given reranker is already built; "
                                 "configure it on the ReasoningReranker you pass, or drop reranker=")
            own = instance_settings(reranker, model=model, backend=backend, mode=mode)
            model, backend, mode = own["model"], own["backend"], own["mode"]  # type: ignore[assignment]
        self.model: str = DEFAULT_MODEL if model is None else model
        self.backend: str = "transformers" if backend is None else backend
        self.mode = mode
        self.device = device
        self.api_key = api_key
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.reranker_kwargs = dict(reranker_kwargs or {})
        self._given = reranker
        self._reranker: ReasoningReranker | None = reranker

    def warm_up(self) -> None:
        """Load the model (once per component; to share one loaded model between components, build them
        with the same ``reranker=``). Idempotent."""
        if self._reranker is not None:
            return
        options: dict[str, Any] = {
            "backend": self.backend,
            "mode": self.mode,
            **self.reranker_kwargs,
        }
        for name, value in (("batch_size", self.batch_size), ("max_new_tokens", self.max_new_tokens)):
            if value is not None:
                options[name] = value
        if self.device is not None:
            options["device"] = self.device.to_torch_str()
        if self.api_key is not None and (key := self.api_key.resolve_value()) is not None:
            options["api_key"] = key
        self._reranker = ReasoningReranker(self.model, **options)

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` for async runs (``Pipeline.run_async`` calls it): the model loads in a worker
        thread, so the event loop keeps serving other tasks meanwhile. Idempotent.

        Loading off the loop is safe for every reasonrank backend: the served (openai) backend opens its HTTP
        client per event loop, on first use, not at load time.
        """
        if self._reranker is None:
            await asyncio.to_thread(self.warm_up)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the component (the model is referenced by name, API keys as environment variables).

        Raises:
            SerializationError: the component wraps a ready ``reranker`` instance.
        """
        if self._given is not None:
            raise SerializationError(
                "A ReasoningRanker built around a ready reranker instance cannot be serialized; "
                "build it with model=..."
            )
        return default_to_dict(
            self,
            model=self.model,
            backend=self.backend,
            mode=self.mode,
            device=self.device.to_dict() if self.device else None,
            api_key=self.api_key.to_dict() if self.api_key else None,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            reranker_kwargs=self.reranker_kwargs,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasoningRanker:
        """Deserialize a component written by :meth:`to_dict`."""
        params = data.get("init_parameters", {})
        if isinstance(params.get("device"), dict):
            params["device"] = ComponentDevice.from_dict(params["device"])
        deserialize_secrets_inplace(params, keys=["api_key"])
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Rank ``documents`` by relevance to ``query``.

        Args:
            query: The query.
            documents: Documents to rank.
            top_k: The maximum number of Documents to return; overrides the init value.
            score_threshold: Keep only Documents with at least this score; overrides the init value.

        Returns:
            ``{"documents": [...]}``: copies, most relevant first, with ``score`` and reasonrank metadata.

        Raises:
            ValueError: ``top_k`` is not > 0, or the query is empty.
        """
        top_k, threshold, docs, texts = self._prepare(documents, top_k, score_threshold)
        if not docs:
            return {"documents": []}
        self.warm_up()
        assert self._reranker is not None
        results = self._reranker.rank(query, judged_texts(texts), top_k=top_k)
        return {"documents": self._to_documents(docs, with_empty_last(results, texts, top_k), threshold)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Async :meth:`run`: loads the model off the event loop (:meth:`warm_up_async`), scores through the
        reranker's async API."""
        top_k, threshold, docs, texts = self._prepare(documents, top_k, score_threshold)
        if not docs:
            return {"documents": []}
        await self.warm_up_async()
        assert self._reranker is not None
        results = await self._reranker.arank(query, judged_texts(texts), top_k=top_k)
        return {"documents": self._to_documents(docs, with_empty_last(results, texts, top_k), threshold)}

    # ------------------------------------------------------------------ translation
    def _prepare(
        self, documents: list[Document], top_k: int | None, score_threshold: float | None
    ) -> tuple[int, float | None, list[Document], list[str]]:
        top_k = self.top_k if top_k is None else top_k
        if top_k <= 0:
            raise ValueError(f"top_k must be > 0, but got {top_k}")
        threshold = self.score_threshold if score_threshold is None else score_threshold
        best: dict[str, Document] = {}  # dedupe by id, keeping the highest score (Haystack rankers do this)
        for doc in documents:
            kept = best.get(doc.id)
            if kept is None or (doc.score if doc.score is not None else -inf) > (
                kept.score if kept.score is not None else -inf
            ):
                best[doc.id] = doc
        docs = list(best.values())
        texts = []
        for doc in docs:
            meta = [str(doc.meta[k]) for k in self.meta_fields_to_embed if doc.meta.get(k)]
            texts.append(self.embedding_separator.join([*meta, doc.content] if doc.content else meta))
        return top_k, threshold, docs, texts

    @staticmethod
    def _to_documents(
        docs: list[Document], results: list[RerankResult], threshold: float | None
    ) -> list[Document]:
        out = [
            replace(
                docs[r.index],
                score=float(r.score),
                meta={**docs[r.index].meta, **result_metadata(r)},
            )
            for r in results
        ]
        return out if threshold is None else [d for d in out if d.score >= threshold]
