"""LangChain document compressor over :class:`reasonrank.ReasoningReranker` (translation only)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from copy import deepcopy
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

import reasonrank
from reasonrank import RerankResult
from reasonrank.integration import result_metadata

__all__ = ["ReasoningReranker"]


class ReasoningReranker(BaseDocumentCompressor):
    """Document compressor that reranks with a reasoning reranker (a small LM explains, then grades).

    Returns copies of the best ``top_n`` documents, most relevant first, with ``metadata["relevance_score"]``
    (a float in [0, 1]) and ``reasonrank_label``, ``reasonrank_explanation``, ``reasonrank_parse_ok``.
    Pass a ready ``reasonrank.ReasoningReranker`` as ``reranker`` to share one loaded model; otherwise one is
    built from ``model``/``mode``/``reranker_kwargs`` on first use.

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

    def _get_reranker(self) -> reasonrank.ReasoningReranker:
        with self._lock:
            if self.reranker is None:
                self.reranker = reasonrank.ReasoningReranker(
                    self.model, mode=self.mode, **self.reranker_kwargs
                )
        return self.reranker

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; return copies of the best ``top_n``.

        Raises:
            ValueError: empty query, or a document with empty ``page_content`` (the message names its index).
        """
        if len(documents) == 0:
            return []
        results = self._get_reranker().rank(query, [d.page_content for d in documents], top_k=self.top_n)
        return self._to_documents(documents, results)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents` through the reranker's async API."""
        if len(documents) == 0:
            return []
        rr = self.reranker if self.reranker is not None else await asyncio.to_thread(self._get_reranker)
        results = await rr.arank(query, [d.page_content for d in documents], top_k=self.top_n)
        return self._to_documents(documents, results)

    @staticmethod
    def _to_documents(documents: Sequence[Document], results: list[RerankResult]) -> list[Document]:
        out = []
        for r in results:
            doc = documents[r.index]
            meta = {**deepcopy(doc.metadata), "relevance_score": float(r.score), **result_metadata(r)}
            out.append(doc.model_copy(update={"metadata": meta}))
        return out
