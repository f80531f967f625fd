"""LangChain document compressor over :class:`reasonrank.ReasoningReranker` (translation only)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

import reasonrank
from reasonrank import RerankResult
from reasonrank.integration import (
    EMPTY_KEY,
    deepcopy_memo,
    instance_settings,
    judged_texts,
    result_metadata,
    with_empty_last,
)

__all__ = ["ReasoningReranker", "EMPTY_KEY"]


class ReasoningReranker(BaseDocumentCompressor):
    """Document compressor that reranks with a reasoning reranker (a small LM explains, then grades).

    Returns copies of the best ``top_n`` documents, most relevant first, with ``metadata["relevance_score"]``
    (a float in [0, 1]) and ``reasonrank_label``, ``reasonrank_explanation``, ``reasonrank_parse_ok``.
    A document with empty ``page_content`` is not judged: it ranks last, with score 0, label 0 and
    ``metadata["reasonrank_empty"] = True``.
    Pass a ready ``reasonrank.ReasoningReranker`` as ``reranker`` to share one loaded model (``model`` and
    ``mode`` then report its settings; a different explicit ``model``/``mode`` is a ``ValueError``); otherwise
    one is built from ``model``/``mode``/``reranker_kwargs`` on first use.

    Copies: ``copy.deepcopy`` copies the settings and shares the reranker by reference (a loaded model is
    reused, neither reloaded nor duplicated in memory); a copy made before the first use loads its own on
    first use. ``pickle`` keeps the settings only: the unpickled compressor loads its model on first use. A
    compressor around a ``reranker=`` instance cannot be pickled (a loaded model is not picklable): build it
    from ``model=`` instead.

    Example:
        .. code-block:: python

            from langchain_reasonrank import ReasoningReranker as ReasoningRerankCompressor

            compressor = ReasoningRerankCompressor(model="smollm2-local", mode="direct", top_n=3)
            docs = compressor.compress_documents(documents, query="what is bm25")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str = reasonrank.DEFAULT_MODEL
    """Model for ``reasonrank.ReasoningReranker`` (hub id, local dir, ``.gguf``, ``"smollm2-local"``)."""
    mode: Literal["reasoning", "direct"] | None = None  # None: the model's reasonrank.json (else reasoning)
    """``"reasoning"`` (explain, then grade) or ``"direct"`` (grade only)."""
    top_n: int | None = Field(default=3, ge=1)
    """Number of documents to return; None returns all, reranked."""
    reranker_kwargs: dict[str, Any] = Field(default_factory=dict)
    """More ``reasonrank.ReasoningReranker`` options (backend, batch_size, max_new_tokens, template...)."""
    reranker: Any = Field(default=None, exclude=True)
    """A ready ``reasonrank.ReasoningReranker`` to use (and share); built lazily when None."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _built: Any = PrivateAttr(default=None)  # the reranker this compressor built itself (not a given one)

    @model_validator(mode="before")
    @classmethod
    def _settings_of_given_reranker(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("reranker"), reasonrank.ReasoningReranker):
            data = {**data, **instance_settings(data["reranker"], model=data.get("model"), mode=data.get("mode"))}
        return data

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> ReasoningReranker:
        return super().__deepcopy__(deepcopy_memo(memo, reranker=self.reranker, lock=self._lock))

    def __getstate__(self) -> dict[Any, Any]:
        if self.reranker is not None and self.reranker is not self._built:
            raise TypeError("a ReasoningReranker compressor built around a ready reranker instance (reranker=...) "
                            "cannot be pickled: a loaded model is not picklable. Build it with model=..., mode=... "
                            "(and reranker_kwargs) instead; the unpickled copy then loads its model on first use")
        state = super().__getstate__()
        private = {k: v for k, v in (state["__pydantic_private__"] or {}).items() if k not in ("_lock", "_built")}
        return {**state, "__dict__": {**state["__dict__"], "reranker": None}, "__pydantic_private__": private}

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()
        self._built = None

    def _get_reranker(self) -> reasonrank.ReasoningReranker:
        with self._lock:
            if self.reranker is None:
                self._built = self.reranker = reasonrank.ReasoningReranker(
                    self.model, mode=self.mode, **self.reranker_kwargs
                )
        return self.reranker

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; return copies of the best ``top_n``.

        Raises:
            ValueError: empty query.
        """
        if len(documents) == 0:
            return []
        texts = [d.page_content for d in documents]
        results = self._get_reranker().rank(query, judged_texts(texts), top_k=self.top_n)
        return self._to_documents(documents, with_empty_last(results, texts, self.top_n))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` through the reranker's async API."""
        if len(documents) == 0:
            return []
        rr = self.reranker if self.reranker is not None else await asyncio.to_thread(self._get_reranker)
        texts = [d.page_content for d in documents]
        results = await rr.arank(query, judged_texts(texts), top_k=self.top_n)
        return self._to_documents(documents, with_empty_last(results, texts, self.top_n))

    @staticmethod
    def _to_documents(documents: Sequence[Document], results: list[RerankResult]) -> list[Document]:
        out = []
        for r in results:
            doc = documents[r.index]
            meta = {**deepcopy(doc.metadata), "relevance_score": float(r.score), **result_metadata(r)}
            out.append(doc.model_copy(update={"metadata": meta}))
        return out
