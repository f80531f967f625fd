"""``reasonrank serve``: a rerank HTTP service speaking the Cohere/Jina and TEI rerank APIs.

Needs the ``serve`` extra: ``pip install "reasonrank[serve]"`` (FastAPI, uvicorn, prometheus-client).

* :mod:`~reasonrank.serve.config` - :class:`ServeConfig` and the CLI arguments (light, no FastAPI import);
* :mod:`~reasonrank.serve.batcher` - the cross-request batching queue and worker;
* :mod:`~reasonrank.serve.schemas` - request models, input limits, errors;
* :mod:`~reasonrank.serve.service` - scoring with timeouts, disconnects, draining, fusion;
* :mod:`~reasonrank.serve.middleware` - auth, body limit, draining 503s, metrics per request;
* :mod:`~reasonrank.serve.metrics` - Prometheus metrics;
* :mod:`~reasonrank.serve.app` - the FastAPI routes; :mod:`~reasonrank.serve.server` - uvicorn with draining.

Example:
    >>> from reasonrank.serve import ServeConfig
    >>> ServeConfig(port=9000, api_key="secret")  # doctest: +ELLIPSIS
    ServeConfig(host='127.0.0.1', port=9000, model_name='reasonrank-tiny', max_documents=1000, ...)
"""

from __future__ import annotations

from typing import Any

from .config import API_KEY_ENV, ServeConfig, add_serve_parser, config_from_args

__all__ = ["API_KEY_ENV", "ServeConfig", "add_serve_parser", "config_from_args", "create_app", "run",
           "serve_from_args"]


def __getattr__(name: str) -> Any:
    # FastAPI/uvicorn load only when the app is built, so `reasonrank --help` stays light.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("run", "serve_from_args"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
