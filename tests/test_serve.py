"""`reasonrank serve` as a real server on 127.0.0.1 (subprocess, tiny random model), driven by real clients.

* server D: direct mode, API key on (REASONRANK_API_KEY), tight limits - clients, equality with the
  in-process reranker, bad input, auth, a 200+ request concurrent load;
* server R: reasoning mode, no auth, ``--max-queue 1``, a short request timeout - overload (503), a
  disconnecting client (its work is dropped), the request timeout (504);
* server S (one per test): SIGTERM while a request is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install "reasonrank[serve]"')
pytest.importorskip("uvicorn", reason='needs the serve extra: pip install "reasonrank[serve]"')
httpx = pytest.importorskip("httpx")

from reasonrank import ReasoningReranker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "s3cret-Key-for-tests-7781"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUERY = "what is bm25"
DOCS = [json.loads(line) for line in (ROOT / "examples" / "sample.jsonl").read_text().splitlines() if line.strip()]
TEXTS = [d["text"] for d in DOCS]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serve(model_dir: Path, log: Path, *args: str, key: str | None = None) -> Iterator[Server]:
    """Start ``python -m reasonrank.cli serve`` on a free port, wait for /health, stop it by PID."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "REASONRANK_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    if key:
        env["REASONRANK_API_KEY"] = key
    cmd = [sys.executable, "-m", "reasonrank.cli", "serve", "--model", str(model_dir), "--port", str(port), *args]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    srv = Server(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(srv.url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield srv
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _metric(url: str, name: str, headers: dict[str, str] | None = None) -> float:
    """Sum of a Prometheus sample over its labels (0 when absent)."""
    text = httpx.get(url + "/metrics", headers=headers or {}, timeout=10).text
    vals = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(vals)


def _wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ server D (direct)
@pytest.fixture(scope="module")
def direct(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "direct.log"
    # fp32: answers are compared exactly with in-process scores, and pooled batches pad differently (under bf16
    # padding moves scores by ~1e-3; tests/test_backend_dtype.py bounds bf16)
    with _serve(tiny_model_dir, log, "--mode", "direct", "--dtype", "float32", "--max-doc-tokens", "64",
                "--max-documents", "50",
                "--max-document-bytes", "4000", "--max-request-bytes", "60000", "--served-model-name", "rr-tiny",
                "--verbose", key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def ref(tiny_model_dir: Path) -> Iterator[ReasoningReranker]:
    """The same model and settings in-process: what the server must return."""
    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", device="cpu", dtype="float32", max_doc_tokens=64)
    yield rr
    rr.close()


def test_cohere_sdk_v2_and_v1_parse_unchanged(direct: Server, ref: ReasoningReranker) -> None:
    cohere = pytest.importorskip("cohere")
    expected = [r.score for r in ref.score(QUERY, TEXTS)]
    order = sorted(range(len(TEXTS)), key=lambda i: -expected[i])

    v2 = cohere.ClientV2(api_key=KEY, base_url=direct.url).rerank(model="rerank-v3.5", query=QUERY,
                                                                  documents=TEXTS, top_n=3)
    assert [r.index for r in v2.results] == order[:3]
    for r in v2.results:
        assert r.relevance_score == pytest.approx(expected[r.index], abs=1e-5)
    assert v2.meta.api_version.version == "2"

    v1 = cohere.Client(api_key=KEY, base_url=direct.url).rerank(model="rerank-english-v3.0", query=QUERY,
                                                                documents=TEXTS, return_documents=True)
    assert [r.index for r in v1.results] == order
    assert [r.document.text for r in v1.results] == [TEXTS[i] for i in order]
    assert [r.relevance_score for r in v1.results] == pytest.approx([expected[i] for i in order], abs=1e-5)


def test_langchain_cohere_rerank(direct: Server, ref: ReasoningReranker) -> None:
    pytest.importorskip("langchain_cohere", reason="langchain-cohere is not installed (it pins cohere<6)")
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    expected = [r.score for r in ref.score(QUERY, TEXTS)]
    rr = CohereRerank(model="reasonrank", cohere_api_key=KEY, base_url=direct.url, top_n=2)
    out = rr.compress_documents([Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)], QUERY)
    assert len(out) == 2
    for d in out:
        assert d.metadata["relevance_score"] == pytest.approx(expected[d.metadata["i"]], abs=1e-5)


def test_llama_index_cohere_rerank(direct: Server, ref: ReasoningReranker) -> None:
    pytest.importorskip("llama_index.postprocessor.cohere_rerank",
                        reason="llama-index-postprocessor-cohere-rerank is not installed (it pins cohere<7)")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    expected = {t: r.score for t, r in zip(TEXTS, ref.score(QUERY, TEXTS))}
    post = CohereRerank(api_key=KEY, base_url=direct.url, model="reasonrank", top_n=3)
    nodes = [NodeWithScore(node=TextNode(text=t), score=0.0) for t in TEXTS]
    out = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert len(out) == 3 and [n.score for n in out] == sorted((n.score for n in out), reverse=True)
    for n in out:
        assert n.score == pytest.approx(expected[n.node.get_content()], abs=1e-5)


def test_tei_schema(direct: Server, ref: ReasoningReranker) -> None:
    expected = [r.score for r in ref.score(QUERY, TEXTS)]
    r = httpx.post(direct.url + "/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True},
                   headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert sorted(x["index"] for x in rows) == list(range(len(TEXTS)))
    assert [x["score"] for x in rows] == sorted((x["score"] for x in rows), reverse=True)
    for x in rows:
        assert x["score"] == pytest.approx(expected[x["index"]], abs=1e-5) and x["text"] == TEXTS[x["index"]]
    raw = httpx.post(direct.url + "/rerank", json={"query": QUERY, "texts": TEXTS[:2], "raw_scores": True},
                     headers=AUTH, timeout=60).json()
    assert all("text" not in x for x in raw)
    assert {x["index"]: x["score"] for x in raw} == pytest.approx({i: 2 * expected[i] for i in range(2)}, abs=1e-5)
    long_text = " ".join(["ranking"] * 300)  # over --max-doc-tokens 64
    r = httpx.post(direct.url + "/rerank", json={"query": QUERY, "texts": ["short", long_text], "truncate": False},
                   headers=AUTH, timeout=60)
    assert r.status_code == 413 and r.json()["field"] == "texts[1]" and "truncate: true" in r.json()["error"]


def test_objects_extras_and_same_path_cohere_body(direct: Server, ref: ReasoningReranker) -> None:
    long_text = " ".join(["ranking"] * 300)
    docs = [{"text": DOCS[0]["text"], "title": DOCS[0]["title"], "id": "a"}, {"text": long_text}, "plain string"]
    expected = ref.score(QUERY, docs)
    r = httpx.post(direct.url + "/rerank", headers=AUTH, timeout=60, json={
        "model": "whatever", "query": QUERY, "documents": docs, "return_documents": True,
        "return_explanations": True, "max_tokens_per_doc": 512, "priority": None})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "rr-tiny" and body["usage"]["documents"] == 3 and body["id"]
    for row in body["results"]:
        exp = expected[row["index"]]
        assert row["relevance_score"] == pytest.approx(exp.score, abs=1e-5)
        assert row["label"] == exp.label and row["parse_ok"] is True and row["error"] is None
        assert "explanation" in row and row["explanation"] is None  # direct mode writes none
        assert row["truncated"] is exp.truncated and (row["index"] != 1 or exp.truncated)
    assert {row["index"]: row["document"] for row in body["results"]} == {0: docs[0], 1: docs[1],
                                                                           2: {"text": "plain string"}}
    plain = httpx.post(direct.url + "/v1/rerank", headers=AUTH, timeout=60,
                       json={"query": QUERY, "documents": ["a doc"]}).json()["results"][0]
    assert "document" not in plain and "explanation" not in plain


BIG = "x" * 4001


@pytest.mark.parametrize("path,body,status,field,needle", [
    ("/v1/rerank", {"query": "", "documents": ["a"]}, 422, "query", "query is empty"),
    ("/v2/rerank", {"query": "   ", "documents": ["a"]}, 422, "query", "query is empty"),
    ("/v1/rerank", {"documents": ["a"]}, 422, "query", "query is missing"),
    ("/v1/rerank", {"query": 5, "documents": ["a"]}, 422, "query", "valid string"),
    ("/v1/rerank", {"query": "q", "documents": []}, 422, "documents", "send at least one document"),
    ("/v1/rerank", {"query": "q"}, 422, "documents", "documents is missing"),
    ("/v1/rerank", {"query": "q", "documents": "one string"}, 422, "documents", "valid list"),
    ("/v1/rerank", {"query": "q", "documents": ["ok", " "]}, 422, "documents[1]", "remove empty documents"),
    ("/v1/rerank", {"query": "q", "documents": ["ok", 7]}, 422, "documents[1]", "object with a 'text' field, got int"),
    ("/v1/rerank", {"query": "q", "documents": ["ok", None]}, 422, "documents[1]", "got NoneType"),
    ("/v1/rerank", {"query": "q", "documents": [{"body": "x"}]}, 422, "documents[0]", "without a 'text' field"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": 3}]}, 422, "documents[0]", "must be a str"),
    ("/v1/rerank", {"query": "q", "documents": ["d"] * 51}, 422, "documents", "limit of 50 per request"),
    ("/v1/rerank", {"query": "q", "documents": ["ok", BIG]}, 422, "documents[1]", "--max-document-bytes"),
    ("/v1/rerank", {"query": BIG, "documents": ["ok"]}, 422, "query", "4001 bytes"),
    ("/v1/rerank", {"query": "q", "documents": ["ok"], "top_n": 0}, 422, "top_n", "top_n must be >= 1"),
    ("/v1/rerank", {"query": "q", "documents": ["ok"], "top_n": "many"}, 422, "top_n", "positive integer"),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "t", "year": 1}], "rank_fields": ["author"]}, 422,
     "documents[0]", "none of the rank_fields"),
    ("/v1/rerank", b'{"query": "q", "documents": ["\\ud800"]}', 422, "documents[0]", "lone surrogate"),
    ("/v1/rerank", b'{"query": "q", "documents": [', 400, None, "not valid JSON"),
    ("/v1/rerank", b'["q", "d"]', 422, "body", "must be a JSON object"),
    ("/rerank", {"query": "q"}, 422, "documents", "neither 'documents'"),
    ("/rerank", {"query": "q", "texts": []}, 422, "texts", "send at least one document"),
    ("/rerank", {"query": "q", "texts": ["a", ""]}, 422, "texts[1]", "is empty"),
    ("/rerank", {"query": "q", "texts": ["a", {"text": "b"}]}, 422, "texts[1]", "valid string"),
])
def test_bad_input_names_the_field(direct: Server, path: str, body: Any, status: int, field: str | None,
                                   needle: str) -> None:
    kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(direct.url + path, headers={**AUTH, "content-type": "application/json"}, timeout=60, **kw)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field and needle in err["message"] and err["error"] == err["message"], err


def test_request_body_limit(direct: Server) -> None:
    body = json.dumps({"query": "q", "documents": ["y" * 3000] * 21}).encode()  # > 60000 bytes
    r = httpx.post(direct.url + "/v1/rerank", content=body, headers={**AUTH, "content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and "--max-request-bytes" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = httpx.post(direct.url + "/v1/rerank", content=chunks(), headers={**AUTH, "content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_auth(direct: Server) -> None:
    cohere = pytest.importorskip("cohere")
    body = {"query": QUERY, "documents": ["a"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": KEY}):
        r = httpx.post(direct.url + "/v1/rerank", json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert "Authorization: Bearer" in r.json()["message"]
    assert httpx.get(direct.url + "/metrics", timeout=30).status_code == 401
    assert httpx.get(direct.url + "/v1/models", timeout=30).status_code == 401
    assert httpx.get(direct.url + "/health", timeout=30).status_code == 200  # probes need no key
    assert httpx.post(direct.url + "/v1/rerank", json=body, headers={"authorization": f"bearer {KEY}"},
                      timeout=30).status_code == 200
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="not-the-key", base_url=direct.url).rerank(model="m", query="q", documents=["d"])
    assert KEY not in direct.log.read_text()


def test_health_models_metrics(direct: Server) -> None:
    h = httpx.get(direct.url + "/health", timeout=30).json()
    assert h["status"] == "ok" and h["mode"] == "direct" and h["model"] == "rr-tiny"
    m = httpx.get(direct.url + "/v1/models", headers=AUTH, timeout=30).json()
    assert m["object"] == "list" and m["data"][0]["id"] == "rr-tiny" and m["data"][0]["labels"] == [0, 1, 2]
    text = httpx.get(direct.url + "/metrics", headers=AUTH, timeout=30).text
    for name in ("reasonrank_requests_total", "reasonrank_documents_total", "reasonrank_request_latency_seconds_bucket",
                 "reasonrank_queue_depth", "reasonrank_parse_failures_total", "reasonrank_errors_total",
                 "reasonrank_batch_documents_bucket", "reasonrank_inflight_requests"):
        assert name in text, name
    assert _metric(direct.url, "reasonrank_errors_total", AUTH) > 0  # the bad-input tests above


def test_load_concurrent_requests_are_batched_and_exact(direct: Server, ref: ReasoningReranker) -> None:
    """220 concurrent requests (20 distinct ones): every answer equals the in-process score, none is lost,
    duplicated or mixed up, and engine calls pool documents of several requests."""
    words = "ranking retrieval query bm25 term frequency search engine document index vector dense".split()
    cases = []
    for k in range(20):
        docs = [" ".join(words[(k + j + i) % len(words)] for i in range(3 + j)) + f" {k}" for j in range(2 + k % 3)]
        cases.append((f"{words[k % len(words)]} question {k}", docs))
    expected = [[r.score for r in ref.score(q, d)] for q, d in cases]
    n_requests = 220
    calls_before = _metric(direct.url, "reasonrank_batch_documents_count", AUTH)

    async def one(client: Any, i: int) -> tuple[int, Any]:
        q, d = cases[i % len(cases)]
        r = await client.post("/v1/rerank", json={"query": q, "documents": d})
        return i, r

    async def run() -> list[tuple[int, Any]]:
        limits = httpx.Limits(max_connections=n_requests, max_keepalive_connections=n_requests)
        async with httpx.AsyncClient(base_url=direct.url, headers=AUTH, limits=limits, timeout=120) as client:
            return await asyncio.wait_for(asyncio.gather(*(one(client, i) for i in range(n_requests))), 120)

    t0 = time.perf_counter()
    answers = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    assert sorted(i for i, _ in answers) == list(range(n_requests))
    assert len({r.json()["id"] for _, r in answers}) == n_requests
    for i, r in answers:
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        exp = expected[i % len(cases)]
        assert sorted(x["index"] for x in res) == list(range(len(exp)))  # nothing lost or duplicated
        for x in res:
            assert x["relevance_score"] == pytest.approx(exp[x["index"]], abs=1e-5)
    calls = _metric(direct.url, "reasonrank_batch_documents_count", AUTH) - calls_before
    docs = sum(len(cases[i % len(cases)][1]) for i in range(n_requests))
    assert calls < n_requests / 2, f"{calls} engine calls for {n_requests} requests: requests were not pooled"
    print(f"\n{n_requests} requests, {docs} documents in {elapsed:.1f} s, {calls:.0f} engine calls")


# ------------------------------------------------------------------------------------------ server R (reasoning)
# fp32: answers are compared exactly with the in-process reranker, and the overload/timeout tests size their
# work for the speed they were written against
REASONING_ARGS = ("--mode", "reasoning", "--dtype", "float32", "--batch-size", "4", "--max-batch-docs", "4",
                  "--max-new-tokens", "192")


@pytest.fixture(scope="module")
def reasoning(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serve") / "reasoning.log"
    with _serve(tiny_model_dir, log, *REASONING_ARGS, "--max-queue", "1", "--request-timeout", "5",
                "--batch-wait-ms", "0") as srv:
        yield srv


def test_no_auth_and_reasoning_explanations(reasoning: Server, tiny_model_dir: Path) -> None:
    docs = TEXTS[:2]
    r = httpx.post(reasoning.url + "/v2/rerank", json={"query": QUERY, "documents": docs}, timeout=60)
    assert r.status_code == 200, r.text
    rr = ReasoningReranker(str(tiny_model_dir), mode="reasoning", device="cpu", dtype="float32", batch_size=4,
                           max_new_tokens=192)
    try:
        expected = rr.score(QUERY, docs)
    finally:
        rr.close()
    for row in r.json()["results"]:
        exp = expected[row["index"]]
        assert row["relevance_score"] == pytest.approx(exp.score, abs=1e-5)
        assert row["explanation"] == exp.explanation and row["parse_ok"] == exp.parse_ok
    failures = sum(not e.parse_ok for e in expected)
    assert _metric(reasoning.url, "reasonrank_parse_failures_total") == failures


def test_full_queue_503_then_disconnect_frees_work(reasoning: Server) -> None:
    url = reasoning.url
    n = 96
    engine_before = _metric(url, "reasonrank_batch_documents_sum")
    dropped_before = _metric(url, "reasonrank_dropped_documents_total")

    async def run() -> None:
        client = httpx.AsyncClient(base_url=url, timeout=60)
        slow = asyncio.ensure_future(client.post("/v1/rerank", json={"query": QUERY,
                                                                      "documents": [f"doc {i}" for i in range(n)]}))
        await asyncio.to_thread(_wait_for, lambda: _metric(url, "reasonrank_queue_depth") == 1, 20, "queue depth 1")
        async with httpx.AsyncClient(base_url=url, timeout=30) as other:
            r = await other.post("/v1/rerank", json={"query": QUERY, "documents": ["x"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "--max-queue 1" in r.json()["message"]
        slow.cancel()  # the client gives up: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        await client.aclose()

    asyncio.run(run())
    _wait_for(lambda: _metric(url, "reasonrank_queue_depth") == 0, 20, "the dropped request to leave the queue")
    engine = _metric(url, "reasonrank_batch_documents_sum") - engine_before
    dropped = _metric(url, "reasonrank_dropped_documents_total") - dropped_before
    assert dropped > 0 and engine + dropped == n, (engine, dropped)
    assert _metric(url, 'reasonrank_requests_total{endpoint="/v1/rerank",status="499"}') == 1


def test_request_timeout_504(reasoning: Server) -> None:
    url = reasoning.url
    _wait_for(lambda: _metric(url, "reasonrank_queue_depth") == 0, 20, "an empty queue")
    dropped_before = _metric(url, "reasonrank_dropped_documents_total")
    t0 = time.monotonic()
    r = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": [f"doc {i}" for i in range(200)]},
                   timeout=60)
    assert r.status_code == 504 and "--request-timeout" in r.json()["message"], r.text
    assert 4.5 < time.monotonic() - t0 < 30
    _wait_for(lambda: _metric(url, "reasonrank_queue_depth") == 0, 20, "the timed-out request to leave the queue")
    assert _metric(url, "reasonrank_dropped_documents_total") > dropped_before


# ------------------------------------------------------------------------------------------ server S (shutdown)
def test_sigterm_finishes_in_flight_refuses_new_and_exits_0(tiny_model_dir: Path, tmp_path: Path) -> None:
    with _serve(tiny_model_dir, tmp_path / "shutdown.log", *REASONING_ARGS) as srv:
        n = 24
        out: dict[str, Any] = {}

        def slow() -> None:
            out["r"] = httpx.post(srv.url + "/v1/rerank", timeout=120,
                                  json={"query": QUERY, "documents": [f"doc {i}" for i in range(n)]})

        t = threading.Thread(target=slow)
        t.start()
        _wait_for(lambda: _metric(srv.url, "reasonrank_queue_depth") == 1, 20, "the request to be queued")
        srv.proc.send_signal(signal.SIGTERM)
        health = httpx.get(srv.url + "/health", timeout=30)
        assert health.status_code == 503 and health.json()["status"] == "draining"
        late = httpx.post(srv.url + "/v1/rerank", json={"query": QUERY, "documents": ["x"]}, timeout=30)
        assert late.status_code == 503 and late.headers["retry-after"] == "1"
        assert "shutting down" in late.json()["message"]
        t.join(120)
        assert out["r"].status_code == 200 and len(out["r"].json()["results"]) == n
        assert srv.proc.wait(60) == 0
    assert "draining" in srv.log.read_text()
