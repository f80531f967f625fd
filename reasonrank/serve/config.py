"""Configuration of ``reasonrank serve``: a frozen dataclass and its command-line arguments.

This module imports nothing heavy (no FastAPI, no torch), so the CLI can build its parser cheaply.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from ..models import DEFAULT_MODEL, LOCAL_SMOLLM2

__all__ = ["API_KEY_ENV", "ServeConfig", "add_serve_parser", "add_weight_options", "config_from_args"]

API_KEY_ENV = "REASONRANK_API_KEY"
"""Environment variable holding the API key (preferred over ``--api-key``, which other users can see in ``ps``)."""


@dataclass(frozen=True)
class ServeConfig:
    """Service settings: binding, auth, limits, batching and shutdown.

    Attributes:
        host: Interface to bind; ``127.0.0.1`` (default) serves this machine only.
        port: TCP port.
        model_name: Name reported by ``/v1/models`` and in responses (requests may name any model).
        api_key: When set, every endpoint except ``/health`` needs ``Authorization: Bearer <key>``.
        max_documents: Most documents one request may carry.
        max_document_bytes: Most UTF-8 bytes of one document (and of the query).
        max_request_bytes: Most bytes of one request body (larger bodies get 413 before being read in full).
        max_queue: Most requests waiting or being scored; more get 503 with ``Retry-After``.
        max_batch_docs: Documents per engine call, pooled across requests (``None``: 4 x the batch size).
        batch_wait_ms: How long the worker waits for more requests before scoring a batch that is not full.
        request_timeout_s: A request not answered by then gets 504 and its remaining work is dropped.
        shutdown_timeout_s: On SIGTERM, how long in-flight requests may take before the server exits anyway.
        retry_after_s: The ``Retry-After`` value of 503 answers.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)  # never in reprs or logs
    max_documents: int = 1000
    max_document_bytes: int = 100_000
    max_request_bytes: int = 10_000_000
    max_queue: int = 256
    max_batch_docs: int | None = None
    batch_wait_ms: float = 2.0
    request_timeout_s: float = 120.0
    shutdown_timeout_s: float = 30.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_document_bytes", "max_request_bytes", "max_queue", "retry_after_s"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r} (--{name.replace('_', '-')})")
        if self.max_batch_docs is not None and (not isinstance(self.max_batch_docs, int) or self.max_batch_docs < 1):
            raise ValueError(f"max_batch_docs must be a positive int or None, got {self.max_batch_docs!r}")
        for name in ("batch_wait_ms", "request_timeout_s", "shutdown_timeout_s"):
            val = getattr(self, name)
            if not isinstance(val, (int, float)) or isinstance(val, bool) or val < 0:
                raise ValueError(f"{name} must be a number >= 0, got {val!r} (--{name.replace('_', '-')})")
        if self.request_timeout_s == 0:
            raise ValueError("request_timeout_s must be > 0 (--request-timeout)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"the API key is empty; unset {API_KEY_ENV} / drop --api-key to serve without auth, "
                             "or give a non-empty key")


def add_weight_options(parser: argparse.ArgumentParser, scores: str) -> None:
    """``--fusion-weight``, ``--prior-weight`` and ``--likelihood-weight``, the score options ``rerank`` and
    ``serve`` share (``scores``: where the first-stage scores come from)."""
    parser.add_argument("--fusion-weight", type=float, default=None,
                        help=f"fuse the reranker score with the first-stage score, 0..1; needs {scores}")
    parser.add_argument("--prior-weight", type=float, default=None,
                        help="direct mode: divide each document's prior (its label distribution under a "
                             "content-free query) out of its score, 0..1 (up to one more forward pass per new "
                             "document)")
    parser.add_argument("--likelihood-weight", type=float, default=None,
                        help="direct mode: mix the query likelihood (log P(query | document)) into the model "
                             "score, 0..1 (one more forward pass per document); default: the model card's")


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the CLI's subparsers; return its parser."""
    sp = sub.add_parser("serve", help="serve a Cohere/Jina/TEI-compatible rerank HTTP API",
                        description="Serve POST /v1/rerank, /v2/rerank and /rerank (Cohere, Jina and TEI schemas) "
                                    "with cross-request batching. Needs: pip install \"reasonrank[serve]\".")
    sp.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"hub id, local dir, .gguf file or {LOCAL_SMOLLM2!r} (default: {DEFAULT_MODEL})")
    sp.add_argument("--served-model-name", default=None, help="name reported by /v1/models (default: --model)")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--mode", choices=("reasoning", "direct"), default=None,
                    help="default: the model's reasonrank.json, else reasoning")
    sp.add_argument("--backend", default="transformers")
    sp.add_argument("--labels", default=None, help="label scale, e.g. 0,1,2 or 0,1")
    sp.add_argument("--template", default=None, help="template name or YAML/JSON file")
    sp.add_argument("--batch-size", type=int, default=8, help="documents per engine forward/generate batch")
    sp.add_argument("--max-new-tokens", type=int, default=256)
    sp.add_argument("--max-doc-tokens", type=int, default=1024)
    sp.add_argument("--explain-top-k", type=int, default=None, metavar="N",
                    help="direct mode: explain the top N results of each request (one reasoning generation "
                         "each, capped by top_n; a request turns it off with return_explanations: false)")
    add_weight_options(sp, "each document's first-stage 'score' (default: the model card's weight, applied when "
                           "documents carry scores)")
    sp.add_argument("--on-parse-error", choices=("fallback", "report"), default="fallback")
    sp.add_argument("--device", default=None)
    sp.add_argument("--dtype", default=None)
    sp.add_argument("--backend-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="backend option (JSON-parsed when possible), repeatable, e.g. base_url=http://...")
    sp.add_argument("--api-key", default=None,
                    help=f"require 'Authorization: Bearer KEY' (prefer the {API_KEY_ENV} environment variable)")
    sp.add_argument("--max-documents", type=int, default=ServeConfig.max_documents)
    sp.add_argument("--max-document-bytes", type=int, default=ServeConfig.max_document_bytes)
    sp.add_argument("--max-request-bytes", type=int, default=ServeConfig.max_request_bytes)
    sp.add_argument("--max-queue", type=int, default=ServeConfig.max_queue,
                    help="requests waiting or being scored before new ones get 503 + Retry-After")
    sp.add_argument("--max-batch-docs", type=int, default=None,
                    help="documents per engine call pooled across requests (default: 4 x --batch-size)")
    sp.add_argument("--batch-wait-ms", type=float, default=ServeConfig.batch_wait_ms)
    sp.add_argument("--request-timeout", type=float, default=ServeConfig.request_timeout_s, help="seconds")
    sp.add_argument("--shutdown-timeout", type=float, default=ServeConfig.shutdown_timeout_s,
                    help="seconds in-flight requests get after SIGTERM")
    sp.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) and access lines")
    return sp


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """Build a :class:`ServeConfig` from parsed ``serve`` arguments (the key falls back to the environment)."""
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    return ServeConfig(host=args.host, port=args.port, model_name=args.served_model_name or args.model,
                       api_key=key, max_documents=args.max_documents, max_document_bytes=args.max_document_bytes,
                       max_request_bytes=args.max_request_bytes, max_queue=args.max_queue,
                       max_batch_docs=args.max_batch_docs, batch_wait_ms=args.batch_wait_ms,
                       request_timeout_s=args.request_timeout, shutdown_timeout_s=args.shutdown_timeout)
