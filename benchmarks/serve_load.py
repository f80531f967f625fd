#!/usr/bin/env python
"""Bounded load test of ``reasonrank serve``: latency percentiles and batched-vs-serial throughput.

Two phases on the same request mix (loopback only, fixed request counts, a time cap per phase):

1. *serial*: one client sends requests one after another (each engine call holds one request);
2. *concurrent*: ``--concurrency`` clients at once, so the server pools documents of several requests
   into each engine call (cross-request batching).

It prints p50/p90/p99 latency of each phase, requests/s and documents/s, the concurrent/serial throughput
ratio, and the server's documents per engine call (from ``/metrics``). Every answer is checked: HTTP 200,
each document index exactly once.

Examples::

    python benchmarks/serve_load.py --tiny                          # tiny random model, starts its own server
    python benchmarks/serve_load.py --model smollm2-local --mode direct --requests 100
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --api-key "$REASONRANK_API_KEY"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

_WORDS = ("retrieval ranking query document relevance score term frequency inverse collection index search engine "
          "neural model passage answer question evidence reasoning topic vector sparse dense length").split()


@dataclass
class Phase:
    name: str
    requests: int
    documents: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests_per_s: float
    documents_per_s: float
    engine_calls: float


def _requests(n: int, docs_per_request: int, words_per_doc: int) -> list[dict[str, Any]]:
    out = []
    for k in range(n):
        docs = [" ".join(_WORDS[(k * 7 + j * 3 + i) % len(_WORDS)] for i in range(words_per_doc))
                for j in range(docs_per_request)]
        out.append({"query": f"{_WORDS[k % len(_WORDS)]} {_WORDS[(k * 5) % len(_WORDS)]} question {k}",
                    "documents": docs})
    return out


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] * 1000.0 if s else float("nan")


def _engine_calls(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    m = re.search(r"^reasonrank_batch_documents_count (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


async def _phase(name: str, url: str, headers: dict[str, str], bodies: list[dict[str, Any]], concurrency: int,
                 time_cap: float) -> Phase:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + time_cap
    done_docs = 0

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        nonlocal done_docs
        async with sem:
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            r = await client.post("/v1/rerank", json=body)
            latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {r.status_code}: {r.text[:300]}")
        idx = sorted(x["index"] for x in r.json()["results"])
        if idx != list(range(len(body["documents"]))):
            raise RuntimeError(f"{name}: results lost or duplicated: {idx}")
        done_docs += len(body["documents"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as sync:
        calls0 = _engine_calls(sync)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=time_cap + 60) as client:
            t0 = time.perf_counter()
            await asyncio.gather(*(one(client, b) for b in bodies))
            seconds = time.perf_counter() - t0
        calls = _engine_calls(sync) - calls0
    n = len(latencies)
    return Phase(name=name, requests=n, documents=done_docs, seconds=seconds, p50_ms=_pct(latencies, 0.5),
                 p90_ms=_pct(latencies, 0.9), p99_ms=_pct(latencies, 0.99), requests_per_s=n / seconds,
                 documents_per_s=done_docs / seconds, engine_calls=calls)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(model: str, extra: list[str], log: Path) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "reasonrank.cli", "serve", "--model", model, "--port", str(port), *extra]
    env = {k: v for k, v in os.environ.items() if k != "REASONRANK_API_KEY"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"server not healthy after 300 s; see {log}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiny", action="store_true", help="the tiny random test model (built in a temp dir)")
    src.add_argument("--model", help="model for a server this script starts (any reasonrank serve --model)")
    src.add_argument("--url", help="an already running server")
    ap.add_argument("--api-key", default=None, help="for --url servers with auth")
    ap.add_argument("--mode", choices=("direct", "reasoning"), default="direct")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=200, help="requests of the concurrent phase")
    ap.add_argument("--serial-requests", type=int, default=60, help="requests of the serial phase")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--docs-per-request", type=int, default=4)
    ap.add_argument("--words-per-doc", type=int, default=24)
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per phase; later requests are skipped")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with contextlib.ExitStack() as stack:
        if args.url:
            url = args.url.rstrip("/")
            model = args.url
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-load-")))
            if args.tiny:
                from reasonrank.testing import build_tiny_model

                model = str(build_tiny_model(tmp / "tiny-llama"))
            else:
                model = args.model
            extra = ["--mode", args.mode, "--batch-size", str(args.batch_size), "--max-new-tokens",
                     str(args.max_new_tokens), "--max-queue", str(max(args.concurrency, 1) + 8)]
            url = stack.enter_context(_server(model, extra, tmp / "server.log"))
        warm = _requests(4, args.docs_per_request, args.words_per_doc)
        asyncio.run(_phase("warm-up", url, headers, warm, 1, args.time_cap))
        serial = asyncio.run(_phase("serial", url, headers, _requests(args.serial_requests, args.docs_per_request,
                                                                      args.words_per_doc), 1, args.time_cap))
        conc = asyncio.run(_phase(f"concurrent ({args.concurrency})", url, headers,
                                  _requests(args.requests, args.docs_per_request, args.words_per_doc),
                                  args.concurrency, args.time_cap))
    ratio = conc.requests_per_s / serial.requests_per_s
    if args.json:
        print(json.dumps({"model": "tiny random" if args.tiny else model, "mode": args.mode,
                          "phases": [asdict(serial), asdict(conc)], "throughput_ratio": ratio}))
        return 0
    print(f"model: {'tiny random test model' if args.tiny else model}, {args.mode} mode, "
          f"{args.docs_per_request} documents x {args.words_per_doc} words per request")
    print("| phase | requests | p50 ms | p90 ms | p99 ms | req/s | docs/s | docs per engine call |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in (serial, conc):
        per_call = p.documents / p.engine_calls if p.engine_calls else float("nan")
        print(f"| {p.name} | {p.requests} | {p.p50_ms:.1f} | {p.p90_ms:.1f} | {p.p99_ms:.1f} | "
              f"{p.requests_per_s:.1f} | {p.documents_per_s:.1f} | {per_call:.1f} |")
    print(f"throughput, concurrent / serial: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
