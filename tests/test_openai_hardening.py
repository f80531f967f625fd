"""Hardening of the openai backend against bad servers (issue "Hardening"): malformed replies become
per-document errors naming the URL, one HTTP client per event loop is closed with its loop, ``timeout`` bounds
a whole request, and a password in ``base_url`` never shows. Real HTTP servers on 127.0.0.1
(:class:`reasonrank.testing.StubServer`)."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends.openai import ServerResponseError
from reasonrank.testing import StubServer

pytestmark = pytest.mark.server

QUERY = "how does bm25 rank documents"
DOCS = ["BM25 ranks documents by term frequency.", "BAD Pasta should be cooked al dente.",
        "Okapi BM25 is a ranking function."]
TOP = {"0": math.log(0.2), "1": math.log(0.3), "2": math.log(0.5)}


def _completion(top: Any = TOP, tokens: Any = ("2",)) -> dict[str, Any]:
    lp = {"tokens": list(tokens), "token_logprobs": [-0.1] * len(tokens), "top_logprobs": top,
          "text_offset": [0] * len(tokens)}
    return {"choices": [{"index": 0, "text": "".join(tokens), "logprobs": lp}],
            "usage": {"completion_tokens": len(tokens)}}


MALFORMED = {
    "empty top_logprobs": _completion(top=[]),
    "string logprob": _completion(top=[{"2": "high", "0": -1.0}]),
    "nan first logprob": _completion(top=[{"2": float("nan"), "0": -1.0, "1": -2.0}]),
    "no choices": {"choices": []},
    "choices not a list": {"choices": "oops"},
    "top_logprobs of the wrong type": _completion(top=[7]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_replies_fail_their_document_only(tiny_model_dir: Path, name: str) -> None:
    def respond(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
        return 200, (MALFORMED[name] if "BAD" in body["prompt"] else _completion(top=[TOP]))

    with StubServer(respond) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url,
                               tokenizer=str(tiny_model_dir), on_error="report")
        ranked = rr.rank(QUERY, DOCS)
        rr.close()
    assert len(ranked) == 3  # nothing dropped, no exception escaped
    bad = ranked[-1]
    assert bad.index == 1 and bad.score == 0.0 and bad.error
    assert "127.0.0.1" in bad.error or "non-finite" in bad.error  # the URL (or the NaN named as such)
    assert all(r.error is None and 0 < r.score < 1 for r in ranked[:2])
    assert not any(math.isnan(r.score) for r in ranked)


def test_malformed_reply_raises_with_the_url_under_on_error_raise(tiny_model_dir: Path) -> None:
    with StubServer(lambda n, body: (200, MALFORMED["string logprob"])) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url, tokenizer=str(tiny_model_dir))
        with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:\d+/v1/completions returned a malformed reply"):
            rr.score(QUERY, DOCS[:1])
        rr.close()


def _open_sockets() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            pass
    return n


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts sockets in /proc/self/fd (Linux)")
def test_one_client_per_event_loop_is_closed_with_its_loop(tiny_model_dir: Path) -> None:
    with StubServer(lambda n, body: (200, _completion(top=[TOP]))) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url, tokenizer=str(tiny_model_dir))
        asyncio.run(rr.arank(QUERY, DOCS))  # warm: the first run opens what later runs must not keep adding to
        gc.collect()
        before = _open_sockets()
        for _ in range(40):
            assert len(asyncio.run(rr.arank(QUERY, DOCS))) == 3
        gc.collect()
        after = _open_sockets()
        transport = rr.backend.transport
        assert len(transport._states) == 0  # every loop's client was closed and dropped with its loop
        assert after - before <= 2, f"{after - before} sockets left open by 40 event loops"
        # a loop closed without shutting down its async generators is dropped on the next request
        loop = asyncio.new_event_loop()
        loop.run_until_complete(rr.arank(QUERY, DOCS))
        loop.close()
        rr.score(QUERY, DOCS)  # the private loop's request sweeps the closed loop
        assert loop not in transport._states
        rr.close()


def test_timeout_bounds_a_trickled_answer(tiny_model_dir: Path) -> None:
    import json

    body = json.dumps(_completion(top=[TOP]))
    chunks = [body[i:i + 4] for i in range(0, len(body), 4)]  # ~50 chunks, 0.2 s apart: ~10 s in all

    with StubServer(lambda n, b: (200, chunks), chunk_delay=0.2) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url, tokenizer=str(tiny_model_dir),
                               timeout=1.0, on_error="report")
        [res] = rr.score(QUERY, DOCS[:1])
        finished_when_failed = srv.completed
        rr.close()
    assert res.error and "timed out after 1s" in res.error
    assert finished_when_failed == 0  # the request was given up while the server was still trickling


def test_password_in_base_url_never_shows(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    def respond(n: int, body: dict[str, Any]) -> tuple[int, dict[str, Any] | str]:
        return (503, "busy") if n == 1 else (500, '{"error": "boom"}')

    with StubServer(respond) as srv:
        url = srv.url.replace("http://", "http://alice:s3cret-PW@")
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=url, tokenizer=str(tiny_model_dir),
                               max_retries=1, backoff=0.01)
        caplog.set_level(logging.DEBUG)
        with pytest.raises(ServerResponseError) as err:
            rr.score(QUERY, DOCS[:1])
        shown = [repr(rr), str(err.value), caplog.text, rr.backend.describe()]
        rr.close()
        auth = srv.headers[0].get("Authorization", "")
    assert auth.startswith("Basic ")  # the credentials are still sent
    for text in shown:
        assert "s3cret-PW" not in text
    assert "alice:***@127.0.0.1" in str(err.value) and "alice:***@" in repr(rr)
    with pytest.raises(ValueError) as bad:
        ReasoningReranker("m", backend="openai", base_url="ftp://bob:hunter2@host/v1", tokenizer=str(tiny_model_dir))
    assert "hunter2" not in str(bad.value)
