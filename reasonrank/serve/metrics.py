"""Prometheus metrics of the rerank service, in a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._deps import require

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    """Counters, gauges and histograms exposed at ``GET /metrics``.

    Names (all prefixed ``reasonrank_``): ``requests_total{endpoint,status}``, ``documents_total``
    (documents scored), ``request_latency_seconds{endpoint}``, ``queue_depth``, ``inflight_requests``,
    ``parse_failures_total``, ``document_errors_total``, ``errors_total{kind}`` (rejected or failed requests
    by cause), ``batch_documents`` (documents per engine call: above 1 under load means requests share
    batches) and ``dropped_documents_total`` (work freed by disconnected or timed-out clients).

    Args:
        queue_depth: Read at every scrape.
        inflight: Read at every scrape.
    """

    def __init__(self, *, queue_depth: Callable[[], float], inflight: Callable[[], float]) -> None:
        pc = require("prometheus_client", "serve", purpose="reasonrank serve's /metrics")
        self._pc = pc
        self.registry = pc.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = pc.Counter("reasonrank_requests", "HTTP requests answered", ["endpoint", "status"],
                                   registry=r)
        self.documents = pc.Counter("reasonrank_documents", "documents scored", registry=r)
        self.latency = pc.Histogram("reasonrank_request_latency_seconds", "request latency", ["endpoint"],
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = pc.Gauge("reasonrank_queue_depth", "requests waiting or being scored", registry=r)
        self.queue_depth.set_function(queue_depth)
        self.inflight = pc.Gauge("reasonrank_inflight_requests", "HTTP requests being handled", registry=r)
        self.inflight.set_function(inflight)
        self.parse_failures = pc.Counter("reasonrank_parse_failures",
                                         "outputs without a valid verdict (scored by the fallback)", registry=r)
        self.document_errors = pc.Counter("reasonrank_document_errors", "documents the engine failed on",
                                          registry=r)
        self.errors = pc.Counter("reasonrank_errors", "requests rejected or failed, by cause", ["kind"], registry=r)
        self.batch_documents = pc.Histogram("reasonrank_batch_documents", "documents per engine call",
                                            buckets=_BATCH_BUCKETS, registry=r)
        self.dropped = pc.Counter("reasonrank_dropped_documents",
                                  "documents never scored because their client left or timed out", registry=r)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def observe_results(self, results: list[Any]) -> None:
        """Count a request's scored documents, parse failures and per-document errors."""
        self.documents.inc(len(results))
        failures = sum(1 for r in results if not r.parse_ok and r.error is None)
        if failures:
            self.parse_failures.inc(failures)
        errors = sum(1 for r in results if r.error is not None)
        if errors:
            self.document_errors.inc(errors)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._pc.generate_latest(self.registry), self._pc.CONTENT_TYPE_LATEST
