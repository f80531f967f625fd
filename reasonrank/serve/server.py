"""Run the service under uvicorn with graceful draining: ``reasonrank serve``.

On the first SIGTERM/SIGINT the server keeps its socket open but answers new requests (and ``/health``)
with 503 + ``Retry-After``, lets in-flight and queued requests finish (at most ``--shutdown-timeout``
seconds), then stops and exits 0. A second signal exits at once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from types import FrameType
from typing import Any

from .._deps import MissingDependencyError, require
from .config import ServeConfig, config_from_args

__all__ = ["run", "serve_from_args"]

logger = logging.getLogger(__name__)


def _server_class(uvicorn: Any) -> type:
    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        """uvicorn.Server whose first exit signal drains the service before stopping."""

        def __init__(self, config: Any, service: Any, grace_s: float) -> None:
            super().__init__(config)
            self.service = service
            self.grace_s = grace_s
            self.drain_deadline: float | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.drain_deadline is None and not self.should_exit:  # type: ignore[has-type]
                logger.warning("received %s: draining (new requests get 503; in-flight ones finish, at most "
                               "%gs)", signal.Signals(sig).name, self.grace_s)
                self.service.begin_drain()
                self.drain_deadline = time.monotonic() + self.grace_s
                return
            logger.warning("received %s again: exiting now", signal.Signals(sig).name)
            self.should_exit = True
            self.force_exit = True

        async def on_tick(self, counter: int) -> bool:
            if self.drain_deadline is not None and not self.should_exit:
                if self.service.idle():
                    self.should_exit = True
                elif time.monotonic() >= self.drain_deadline:
                    logger.warning("shutdown timeout reached with %d request(s) in flight",
                                   self.service.inflight)
                    self.should_exit = True
            return bool(await super().on_tick(counter))

    return DrainingServer


def run(reranker: Any, config: ServeConfig, *, log_level: str = "warning", access_log: bool = False) -> int:
    """Serve ``reranker`` until a signal drains and stops it; return the exit code (0 after a clean drain).

    The reranker is closed on the way out.
    """
    uvicorn = require("uvicorn", "serve", purpose="reasonrank serve")
    from .app import create_app

    app = create_app(reranker, config)
    uconf = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=access_log,
                           lifespan="on", timeout_graceful_shutdown=max(1, int(config.shutdown_timeout_s)))
    server = _server_class(uvicorn)(uconf, app.state.service, config.shutdown_timeout_s)
    logger.info("serving on http://%s:%d (model %s, %s mode, auth %s)", config.host, config.port,
                config.model_name, reranker.mode, "on" if config.api_key else "off")
    try:
        server.run()
    finally:
        reranker.close()
    if not server.started:
        return 1
    return 1 if server.force_exit else 0


def serve_from_args(args: argparse.Namespace) -> int:
    """``reasonrank serve``: build the reranker from the parsed arguments and serve it."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ..cli import reranker_from_args

    try:
        require("fastapi", "serve", purpose="reasonrank serve")
        require("uvicorn", "serve", purpose="reasonrank serve")
        require("prometheus_client", "serve", purpose="reasonrank serve")
        config = config_from_args(args)
        reranker = reranker_from_args(args, explain_top_k=args.explain_top_k, fusion_weight=args.fusion_weight,
                                     prior_weight=args.prior_weight, likelihood_weight=args.likelihood_weight)
    except (ValueError, TypeError, OSError, MissingDependencyError) as exc:
        print(f"reasonrank: error: {exc}", file=sys.stderr)
        return 2
    print(f"reasonrank serve: http://{config.host}:{config.port} (model {config.model_name}, {reranker.mode} mode, "
          f"auth {'on' if config.api_key else 'off'}); POST /v1/rerank, /v2/rerank, /rerank", file=sys.stderr)
    return run(reranker, config, log_level="info" if args.verbose else "warning", access_log=args.verbose)
