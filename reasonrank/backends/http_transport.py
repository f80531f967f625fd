"""HTTP transport of the OpenAI-compatible backend: JSON POSTs with retries, backoff and a concurrency cap.

:class:`HttpTransport` keeps one ``httpx.AsyncClient`` (and one semaphore of ``max_concurrency``) per event
loop, closed when that loop shuts down (``asyncio.run`` closes it; a loop closed otherwise is dropped on the
next request), bounds each attempt by a total deadline (``timeout``: connecting, sending and reading the
whole body), retries connection errors, 429 and 5xx with exponential backoff and jitter (honouring
``Retry-After``), and runs coroutines for synchronous callers on a private event-loop thread, stopped by
:meth:`HttpTransport.close` or when the transport is garbage collected. URLs in messages and logs have
their password redacted (:func:`redact_url`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["HttpTransport", "ServerUnavailableError", "ServerResponseError", "RequestError", "RETRY_STATUS",
           "backoff_delay", "redact_url"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ServerUnavailableError(ConnectionError):
    """The server could not be reached (after retries)."""


class ServerResponseError(RuntimeError):
    """The server answered with an HTTP error (after retries for 429/5xx).

    Attributes:
        status: HTTP status code.
        body: The response body (truncated).
    """

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo hidden, for messages, logs and reprs (the real URL is still
    used for requests).

    Example:
        >>> redact_url("http://alice:s3cret@10.0.0.5:8000/v1")
        'http://alice:***@10.0.0.5:8000/v1'
        >>> redact_url("http://127.0.0.1:8000/v1")
        'http://127.0.0.1:8000/v1'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    # user:password -> user:***; a lone userinfo is often a token -> ***
    shown = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    return urlunsplit(parts._replace(netloc=shown))


class RequestError(Exception):
    """A failure of one request only (timeout, unusable answer): ``on_error="report"`` reports it per document."""


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``base * 2**attempt`` scaled by a random factor in [0.5, 1.5], capped.

    Example:
        >>> backoff_delay(0, base=1.0, cap=10.0, rng=random.Random(0)) <= 1.5
        True
        >>> backoff_delay(10, base=1.0, cap=10.0)
        10.0
    """
    r = (rng or random).uniform(0.5, 1.5)
    return min(cap, base * (2 ** attempt) * r)


class HttpTransport:
    """POST JSON to ``base_url + path``, retrying what a retry can fix.

    Args:
        httpx: The imported ``httpx`` module.
        base_url: Normalised server URL (e.g. ``http://127.0.0.1:8000/v1``).
        api_key: Bearer token, or None.
        max_concurrency: Requests in flight at once (per event loop).
        timeout: Seconds per request attempt, in total (connect, send, and read the whole answer).
        max_retries: Retries on connection errors, 429 and 5xx.
        backoff: Base delay of the backoff in seconds.
        max_backoff: Cap on one delay in seconds.
        client_kwargs: Extra ``httpx.AsyncClient`` options (``headers`` are merged with the auth header).
        unavailable_hint: Appended to :class:`ServerUnavailableError` messages (how to start a server).
        thread_name: Name of the private event-loop thread.
    """

    def __init__(self, httpx: Any, base_url: str, *, api_key: str | None, max_concurrency: int, timeout: float,
                 max_retries: int, backoff: float, max_backoff: float, client_kwargs: Mapping[str, Any],
                 unavailable_hint: str = "", thread_name: str = "reasonrank-http") -> None:
        self.httpx = httpx
        self.display_url = redact_url(base_url)
        # credentials in the URL go to basic auth, so that no URL we or httpx log carries them
        parts = urlsplit(base_url)
        self.auth: tuple[str, str] | None = None
        if "@" in parts.netloc:
            userinfo, host = parts.netloc.rsplit("@", 1)
            user, _, password = userinfo.partition(":")
            self.auth = (unquote(user), unquote(password))
            base_url = urlunsplit(parts._replace(netloc=host))
        self.base_url = base_url
        self.api_key = api_key
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.client_kwargs = dict(client_kwargs)
        self.unavailable_hint = unavailable_hint
        self.thread_name = thread_name
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, asyncio.Semaphore, Any]] = (
            weakref.WeakKeyDictionary())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ client per event loop
    async def _state(self) -> tuple[Any, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        for dead in [lp for lp in list(self._states) if lp.is_closed()]:
            self._states.pop(dead, None)  # closed without shutting down its async generators: let GC take it
        state = self._states.get(loop)
        if state is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            kw = dict(self.client_kwargs)
            headers.update(kw.pop("headers", {}) or {})
            if self.auth is not None:
                kw.setdefault("auth", self.auth)
            limits = self.httpx.Limits(max_connections=self.max_concurrency,
                                       max_keepalive_connections=self.max_concurrency)
            client = self.httpx.AsyncClient(timeout=self.timeout, headers=headers, limits=limits, **kw)
            # an async generator of this loop whose `finally` closes the client: asyncio.run (and any runner
            # that calls loop.shutdown_asyncgens) closes it before closing the loop, so no client, socket or
            # reference to the loop outlives it (a WeakKeyDictionary alone cannot: the client refers to the loop)
            closer = self._closer(loop, client)
            await closer.asend(None)
            state = (client, asyncio.Semaphore(self.max_concurrency), closer)
            self._states[loop] = state
        return state[0], state[1]

    async def _closer(self, loop: asyncio.AbstractEventLoop, client: Any) -> Any:
        try:
            yield
        finally:
            self._states.pop(loop, None)
            await client.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to ``body`` posted at ``path``.

        Raises:
            ServerUnavailableError: connection failures after all retries.
            ServerResponseError: an HTTP error status (429/5xx after all retries).
            RequestError: the request timed out or the answer is not JSON.
        """
        httpx = self.httpx
        client, sem = await self._state()
        url, shown = self.base_url + path, self.display_url + path
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            wait = backoff_delay(attempt, base=self.backoff, cap=self.max_backoff)
            try:
                async with sem:
                    # httpx's timeout bounds each read, not the answer: a server trickling its body would not time
                    # out; the deadline covers the whole exchange
                    resp = await asyncio.wait_for(client.post(url, json=body), self.timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError) as exc:
                if last:
                    raise ServerUnavailableError(
                        f"could not reach the OpenAI-compatible server at {self.display_url} after "
                        f"{self.max_retries + 1} attempt(s) ({type(exc).__name__}: {exc}); "
                        f"{self.unavailable_hint}") from exc
                logger.warning("%s %s: %s; retrying in %.2fs", shown, type(exc).__name__, exc, wait)
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                raise RequestError(f"request to {shown} timed out after {self.timeout:g}s; raise timeout=") from exc
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise RequestError(f"{shown} returned non-JSON: {resp.text[:300]!r}") from None
                text = resp.text[:1000]
                if resp.status_code not in RETRY_STATUS or last:
                    hint = (" (is `model` the served model name? see GET /v1/models)"
                            if resp.status_code == 404 else "")
                    raise ServerResponseError(f"{shown} returned HTTP {resp.status_code}{hint}: {text}",
                                              status=resp.status_code, body=text)
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    wait = min(self.max_backoff, max(wait, float(retry_after)))
                logger.warning("%s returned HTTP %d; retrying in %.2fs", shown, resp.status_code, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ sync = async on a private loop
    def run(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the private event-loop thread (started on first use) and return its result."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)
                self._thread.start()
                weakref.finalize(self, _stop_loop, self._loop)  # stop the thread if close() is never called
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (the private loop is closed by :meth:`close`)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state[2].aclose()  # the closer's `finally` closes the client

    def close(self) -> None:
        """Close the private event loop and its HTTP client."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
