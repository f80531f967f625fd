"""The rerank service behind the HTTP routes: batching, timeouts, disconnects, draining, fusion.

One :class:`RerankService` per app owns the :class:`~reasonrank.serve.batcher.Batcher` (started and
stopped by the app's lifespan), the metrics, and the draining flag set on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..fusion import list_scores
from ..parsing import ParseError
from ..schema import Document, RerankResult
from .batcher import Batcher, BatcherClosed, QueueFull
from .config import ServeConfig
from .metrics import ServeMetrics
from .schemas import ApiError

__all__ = ["RerankService", "ranked"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Explain:
    """A document to explain (reasoning prompt), not to score: tags a batcher pair; ``verdict``: the
    direct-mode label the explanation argues (None: judged afresh)."""

    doc: Any
    verdict: int | None = None


def ranked(results: Sequence[RerankResult], top_n: int | None = None) -> list[RerankResult]:
    """Best first (ties keep input order; documents the engine failed on last), cut to ``top_n``."""
    order = sorted(results, key=lambda r: (r.error is not None, -r.score, r.index))
    return order if top_n is None else order[:top_n]


async def _client_gone(receive: Any) -> None:
    """Return when the client disconnects (the body is already read, so the next message is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class RerankService:
    """Scores requests through a shared cross-request batcher.

    Args:
        reranker: A loaded :class:`~reasonrank.ReasoningReranker` (used from the batcher's thread only).
        config: Limits, batching and timeouts.
    """

    def __init__(self, reranker: Any, config: ServeConfig) -> None:
        self.reranker = reranker
        self.config = config
        batch_size = getattr(reranker.backend, "batch_size", None) or 8
        self.max_batch_docs = config.max_batch_docs or 4 * int(batch_size)
        self.inflight = 0
        self.draining = False
        self.started_at = time.time()
        self.metrics = ServeMetrics(queue_depth=lambda: self.batcher.depth, inflight=lambda: self.inflight)
        self.batcher = Batcher(self._engine, max_batch_docs=self.max_batch_docs,
                               max_queue=config.max_queue, batch_wait_s=config.batch_wait_ms / 1000.0,
                               on_batch=self.metrics.batch_documents.observe, on_dropped=self.metrics.dropped.inc)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Start the batcher's worker; on shutdown let queued work finish (bounded by the shutdown timeout)."""
        self.batcher.start()
        logger.info("serving %s (%s mode, %s), up to %d documents per engine call", self.config.model_name,
                    self.reranker.mode, self.reranker.backend.describe(), self.max_batch_docs)
        try:
            yield
        finally:
            self.draining = True
            drained = await asyncio.to_thread(self.batcher.close, self.config.shutdown_timeout_s)
            if not drained:
                logger.warning("shutdown timeout (%ss) reached with requests still queued; they were failed",
                               self.config.shutdown_timeout_s)

    def _engine(self, pairs: list[tuple[str, Any]]) -> list[RerankResult]:
        """The batcher's scorer (worker thread): plain pairs are scored, :class:`_Explain` pairs explained by
        the reasoning reranker over the same engine (``explain_top_k``); results in input order."""
        todo = [i for i, (_, d) in enumerate(pairs) if isinstance(d, _Explain)]
        if not todo:
            return self.reranker.score_pairs(pairs)
        out: list[Any] = [None] * len(pairs)
        plain = [i for i in range(len(pairs)) if i not in set(todo)]
        verdicts = [pairs[i][1].verdict for i in todo]
        for idx, rr, given in ((plain, self.reranker, None),
                               (todo, self.reranker.explainer, None if None in verdicts else verdicts)):
            if idx:
                got = rr.score_pairs([(pairs[i][0], getattr(pairs[i][1], "doc", pairs[i][1])) for i in idx],
                                     verdicts=given)
                for i, r in zip(idx, got):
                    out[i] = r
        return out

    def explain_count(self, want: bool | None, top_n: int | None) -> int:
        """How many of a request's top results to explain: with ``explain_top_k`` (direct mode), the top
        ``min(explain_top_k, top_n)`` unless the request says ``return_explanations: false``."""
        k = getattr(self.reranker, "explain_top_k", None)
        if not k or want is False:
            return 0
        return k if top_n is None else min(k, top_n)

    async def explain(self, query: str, documents: Sequence[Document], results: list[RerankResult], n: int,
                      receive: Any) -> list[RerankResult]:
        """``results`` with the reasoning-mode explanation of the ``n`` best (error-free) ones attached."""
        shown = [r for r in ranked(results, n) if r.error is None]
        if not shown:
            return results
        verdicts = self.reranker.explain_verdicts(shown) or [None] * len(shown)
        judged = await self._run([(query, _Explain(documents[r.index], v)) for r, v in zip(shown, verdicts)],
                                 receive, len(shown))
        return self.reranker._explained(results, shown, judged)  # the core's own merge (ReasoningReranker.rank)

    def begin_drain(self) -> None:
        """Answer new requests with 503 (``/health`` too, so load balancers stop routing here)."""
        self.draining = True

    def idle(self) -> bool:
        """No HTTP request in flight and nothing queued."""
        return self.inflight == 0 and self.batcher.depth == 0

    def unavailable(self, why: str) -> ApiError:
        return ApiError(503, why, error_type="unavailable", headers={"Retry-After": str(self.config.retry_after_s)})

    def check_fusion(self, documents: Sequence[Document]) -> bool:
        """Whether to fuse first-stage scores for these documents (as :meth:`ReasoningReranker.score` does)."""
        rr = self.reranker
        if getattr(rr, "fusion_weight", None) is None:
            return False
        missing = [i for i, d in enumerate(documents) if d.first_stage_score is None]
        if len(missing) == len(documents) and not getattr(rr, "_fusion_required", False):
            return False  # the model card's default weight: nothing to fuse with
        if missing:
            raise ApiError(422, f"documents[{missing[0]}] has no 'score', which score fusion needs: give every "
                                "document a first-stage 'score' or none of them", field=f"documents[{missing[0]}]")
        return True

    async def _run(self, pairs: list[tuple[str, Any]], receive: Any, n_docs: int) -> list[RerankResult]:
        """Submit pairs to the batcher and wait, mapping every failure to its HTTP error."""
        try:
            fut = self.batcher.submit(pairs)
        except QueueFull as exc:
            raise self.unavailable(f"the server is busy: {exc}") from None
        except BatcherClosed as exc:
            raise self.unavailable(str(exc)) from None
        watcher = asyncio.ensure_future(_client_gone(receive))
        try:
            waiting: set[asyncio.Future[Any]] = {fut, watcher}
            done, _ = await asyncio.wait(waiting, timeout=self.config.request_timeout_s,
                                        return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if fut not in done:
            fut.cancel()
            if watcher in done:
                raise ApiError(499, "the client closed the request", error_type="client_closed")
            raise ApiError(504, f"the request was not answered within {self.config.request_timeout_s:g} s "
                                "(--request-timeout); send fewer documents per request or raise the timeout",
                           error_type="timeout")
        try:
            return list(fut.result())
        except (ValueError, TypeError, ParseError) as exc:
            msg = str(exc).replace("docs[", "documents[")
            raise ApiError(422, msg, error_type="validation") from None
        except BatcherClosed as exc:
            raise self.unavailable(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - an engine failure becomes a 500 with its cause
            logger.exception("the engine failed on a request of %d documents", n_docs)
            raise ApiError(500, f"the engine failed: {type(exc).__name__}: {exc}", error_type="internal") from None

    async def score(self, query: str, documents: Sequence[Document], receive: Any) -> list[RerankResult]:
        """Score one request's documents in input order, sharing engine batches with concurrent requests.

        Raises:
            ApiError: 503 when the queue is full or the server drains; 504 on the request timeout; 499 when
                the client disconnected (its queued work is dropped); 422 for input the engine rejects.
        """
        fuse = self.check_fusion(documents)
        results = await self._run([(query, d) for d in documents], receive, len(documents))
        # score_pairs numbers results within the pooled engine call: renumber them within this request
        results = [r if r.index == i else replace(r, index=i) for i, r in enumerate(results)]
        lw = float(getattr(self.reranker, "likelihood_weight", None) or 0)
        if fuse or lw:  # the list-relative parts, as ReasoningReranker.score applies them (list_scores)
            model, final = list_scores([r.model_score or 0.0 for r in results], [r.query_logprob for r in results],
                                       [float(d.first_stage_score or 0.0) for d in documents] if fuse else None,
                                       likelihood_weight=lw, fusion_weight=float(self.reranker.fusion_weight or 0))
            results = [replace(r, model_score=m, score=0.0 if r.error else s)
                       for r, m, s in zip(results, model, final)]
        self.metrics.observe_results(results)
        return results
