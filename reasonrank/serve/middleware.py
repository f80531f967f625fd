"""The ASGI guard in front of every route: draining, API key, body size, in-flight count, metrics.

It is plain ASGI (no ``BaseHTTPMiddleware``), so it never buffers bodies and a client's disconnect still
reaches the route.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from .schemas import ApiError

__all__ = ["GuardMiddleware"]

_ROUTES = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/health", "/v1/models", "/metrics"})
_OPEN = frozenset({"/health"})  # no key needed: load-balancer probes
_DURING_DRAIN = frozenset({"/health", "/metrics"})  # still answered while draining
_KINDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 422: "invalid_input", 499: "client_closed", 500: "internal", 503: "unavailable",
          504: "timeout"}


async def _send_error(send: Any, err: ApiError) -> None:
    body = json.dumps(err.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Wrap the FastAPI app: reject early (503 draining, 401, 413), count, time and label every request.

    Args:
        app: The ASGI app to guard.
        service: The :class:`~reasonrank.serve.service.RerankService` (config, draining flag, metrics).
    """

    def __init__(self, app: Any, service: Any) -> None:
        self.app = app
        self.service = service
        key = service.config.api_key
        self._key = key.encode("utf-8") if key else None

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self._key is None:
            return True
        for name, value in headers:
            if name.lower() == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = self.service
        path = scope["path"]
        endpoint = path if path in _ROUTES else "other"
        status = 500
        start = time.perf_counter()

        async def send_tracked(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        svc.inflight += 1
        try:
            err = self._reject(scope, path)
            if err is not None:
                await _send_error(send_tracked, err)
                return
            limit = svc.config.max_request_bytes
            seen = 0

            async def receive_limited() -> dict[str, Any]:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise ApiError(413, _too_large(limit), field="body", error_type="too_large")
                return message

            await self.app(scope, receive_limited, send_tracked)
        finally:
            svc.inflight -= 1
            svc.metrics.observe_request(endpoint, status, time.perf_counter() - start)
            if status >= 400:
                svc.metrics.errors.labels(kind=_KINDS.get(status, f"http_{status}")).inc()

    def _reject(self, scope: dict[str, Any], path: str) -> ApiError | None:
        svc = self.service
        if svc.draining and path not in _DURING_DRAIN:
            return svc.unavailable("the server is shutting down; retry on another replica")
        headers = scope.get("headers", [])
        if path not in _OPEN and not self._authorized(headers):
            return ApiError(401, "missing or wrong API key; send the header 'Authorization: Bearer <key>' with the "
                                 "key the server was started with (--api-key or REASONRANK_API_KEY)",
                            error_type="unauthorized", headers={"WWW-Authenticate": "Bearer"})
        for name, value in headers:
            if name.lower() == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    return ApiError(400, "the Content-Length header is not a number", error_type="bad_request")
                if size > svc.config.max_request_bytes:
                    return ApiError(413, _too_large(svc.config.max_request_bytes), field="body",
                                    error_type="too_large")
        return None


def _too_large(limit: int) -> str:
    return (f"the request body is over the limit of {limit} bytes (--max-request-bytes); send fewer or shorter "
            "documents per request")
