"""The workload every system of ``benchmarks/throughput.py`` runs, its rows, and their compute bound.

Every system reranks :data:`QUERY` over the same synthetic documents (:func:`make_docs`), cut to the same
number of tokens; a :class:`Row` records one system on one (candidates, doc_tokens) workload.

A document's prompt costs ``2 x params x tokens`` FLOPs (a multiply-add per weight per token), where ``params``
counts the weights every prompt token passes through (:func:`matmul_params`: not the token embedding, a lookup,
nor the output head, which direct scoring runs on one position). Against a matmul peak measured on the spot in
the dtype and thread count the system runs (:func:`matmul_peak_gflops`), that gives the bound
(:func:`compute_bound`) and the fraction of it a system reaches. Systems that compute a shared prompt prefix
once (reasonrank's prefix reuse, vLLM's prefix cache) can pass 1.0: the bound charges every prompt token.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonrank import Document, ReasoningReranker
from reasonrank.backends.dtypes import dtype_name as core_dtype_name

_DTYPES = ("float32", "bfloat16", "float16")

QUERY = "how does bm25 rank documents for a search query"
_WORDS = ("retrieval ranking query document relevance score term frequency inverse collection index search engine "
          "neural model passage answer question evidence reasoning topic vector sparse dense length normalisation "
          "saturation parameter weighting corpus token embedding rerank candidate judgment label explanation").split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    """Distinct synthetic documents, long enough to be cut at any --doc-tokens used here."""
    rng = random.Random(seed)
    return [f"Document {i}. " + " ".join(rng.choice(_WORDS) for _ in range(900)) for i in range(n)]


def mean_tokens(counts: Sequence[int] | None, n: int) -> float | None:
    """Mean prompt tokens of the first ``n`` documents (None when unknown)."""
    return statistics.fmean(counts[:n]) if counts else None


def compute_bound(docs_per_s: float, params: int, tokens_per_doc: float, peak_gflops: float,
                  gen_tokens_per_doc: float = 0.0) -> tuple[float, float]:
    """(bound docs/s, fraction of it reached): ``peak / (2 x params x tokens)``, generated tokens counted on
    top of the prompt's.

    Example:
        >>> compute_bound(5.0, params=100_000_000, tokens_per_doc=250, peak_gflops=100.0)
        (2.0, 2.5)
    """
    bound = peak_gflops * 1e9 / (2 * params * (tokens_per_doc + gen_tokens_per_doc))
    return bound, docs_per_s / bound


def dtype_name(dtype: Any) -> str | None:
    """``torch.bfloat16`` or ``"bfloat16"`` -> ``"bfloat16"``; None for anything else (unknown dtype).

    Example:
        >>> dtype_name("torch.float32"), dtype_name("auto")
        ('float32', None)
    """
    try:  # the core's dtype parser; a name outside the three float types is "unknown" here
        return core_dtype_name(dtype, allowed=_DTYPES)
    except ValueError:
        return None


def matmul_peak_gflops(dtype: str = "float32", device: str = "cpu", *, n: int = 2048, repeats: int = 3,
                       threads: int | None = None) -> float:
    """GFLOP/s of the fastest of ``repeats`` ``n x n`` matmuls in ``dtype`` on ``device`` (after a warm-up);
    ``threads``: intra-op threads while measuring (default: torch's current setting, i.e. the benchmark's).

    Example:
        >>> matmul_peak_gflops("float32", n=64, repeats=1) > 0
        True
    """
    import torch

    cuda = str(device).startswith("cuda")
    inner = 10 if cuda else 1  # a GPU matmul of this size takes microseconds: time several per sync

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype)) for _ in range(2))
        best = math.inf
        with torch.inference_mode():
            for k in range(repeats + 1):
                sync()
                t0 = time.perf_counter()
                for _ in range(inner):
                    a @ b
                sync()
                if k:  # k == 0 is the warm-up
                    best = min(best, (time.perf_counter() - t0) / inner)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def matmul_params(model: Any) -> int:
    """The parameters every prompt token is multiplied through: all but the token embedding (a lookup) and
    the output head (direct scoring runs it on one position per document). Tied weights count once."""
    skip: dict[int, int] = {}
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        weight = getattr(module, "weight", None)
        if weight is not None:
            skip[id(weight)] = weight.numel()
    return sum(p.numel() for p in model.parameters()) - sum(skip.values())


def params_from_config(path: str) -> int:
    """:func:`matmul_params` of the architecture in ``path``'s ``config.json`` (built on the meta device: no
    weights are read), for engines that do not expose their torch module (vLLM, llama.cpp)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return matmul_params(AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)))


def hf_model_dir(model: str) -> str:
    """The Hugging Face directory (or hub id) of a reasonrank model name: a GGUF (e.g. ``smollm2-local``) is
    converted once to safetensors, a shipped adapter (``reasonrank-tiny``) merged once, as the backends do."""
    from reasonrank.models import convert_gguf, resolve_model

    path = resolve_model(model)
    return str(convert_gguf(path)) if path.endswith(".gguf") else path


def label_token_id(tokenizer: Any, marker: str, label: int) -> int:
    """The token the label is written as right after the marker (the position reasonrank reads)."""
    m_ids = tokenizer.encode(marker, add_special_tokens=False)
    return int(tokenizer.encode(f"{marker} {label}", add_special_tokens=False)[len(m_ids):][-1])


def prompt_token_counts(rr: ReasoningReranker, query: str, docs: Sequence[str]) -> list[int] | None:
    """Prompt tokens per document as ``rr``'s engine is fed them: the local backends' own ``label_inputs`` /
    ``generation_inputs`` where they have them, else the rendered prompt (direct mode: without its trailing
    space, then the spacer before the label); None when the backend has no tokenizer."""
    from reasonrank.backends.tokenization import label_tokens, render_prompt

    tok = getattr(rr.backend, "tokenizer", None)
    if tok is None:
        return None
    direct = rr.mode == "direct"
    prompts = [p for p, _ in rr.prompts.build(query, [Document(text=d) for d in docs], rr.backend)]
    if direct and hasattr(rr.backend, "label_inputs"):
        return [len(ids) for ids in rr.backend.label_inputs(prompts, rr.spec)[0]]
    if not direct and hasattr(rr.backend, "generation_inputs"):
        return [len(ids) for ids in rr.backend.generation_inputs(prompts, rr.max_new_tokens)]
    spacer = label_tokens(tok, rr.spec)[0] if direct else []
    texts = [render_prompt(tok, p) for p in prompts]
    return [len(tok.encode(t.rstrip(" ") if direct else t, add_special_tokens=False)) + len(spacer) for t in texts]


class Meter:
    """A run's compute-bound figures: matmul peaks (measured once per dtype, device and thread count) and
    parameter counts.

    Args:
        model: The reasonrank model name (for its config when an engine hides its torch module).
        arch_dir: The --random-arch directory, if any (its config is the model's).
        peak_size: Side of the square matmul (default: 2048 on CPU, 8192 on CUDA).
        peak_threads: CPU threads of the peak matmul (default: torch's intra-op threads, the in-process
            systems' own).
    """

    def __init__(self, model: str, *, arch_dir: Path | None = None, peak_size: int | None = None,
                 peak_threads: int | None = None) -> None:
        self.model, self.arch_dir, self.peak_size, self.peak_threads = model, arch_dir, peak_size, peak_threads
        self.peaks: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._model_dir: str | None = None

    def peak(self, dtype: str | None, device: str, threads: int | None = None) -> tuple[float, str] | None:
        """(GFLOP/s, what was timed) of a ``dtype`` matmul on ``device``; None when the dtype is unknown."""
        if dtype is None:
            return None
        import torch

        threads = threads or self.peak_threads or torch.get_num_threads()
        key = (dtype, device, threads)
        if key not in self.peaks:
            n = self.peak_size or (8192 if device.startswith("cuda") else 2048)
            self.peaks[key] = (matmul_peak_gflops(dtype, device, n=n, threads=threads), n)
        gflops, n = self.peaks[key]
        where = device if device.startswith("cuda") else f"{device}, {threads} thread{'s' if threads > 1 else ''}"
        return gflops, f"{dtype} {n}x{n} matmul ({where})"

    def backend_peak(self, backend: Any) -> tuple[float, str] | None:
        """The peak in a reasonrank backend's dtype on its device (None for engines of unknown dtype)."""
        import torch

        default = "cuda" if torch.cuda.is_available() else "cpu"
        return self.peak(dtype_name(getattr(backend, "dtype", None)), str(getattr(backend, "device", default)))

    def model_dir(self) -> str | None:
        """The model's Hugging Face directory (or hub id): for configs and client-side tokenizers."""
        if self._model_dir is None:
            try:
                self._model_dir = str(self.arch_dir) if self.arch_dir else hf_model_dir(self.model)
            except (OSError, ValueError) as exc:
                print(f"note: no Hugging Face directory for {self.model!r}: {exc}", flush=True)
                self._model_dir = ""
        return self._model_dir or None

    def params(self, backend: Any) -> int | None:
        """:func:`matmul_params` of a backend's torch model, else of its model's config (vLLM, openai)."""
        model = getattr(backend, "model", None)
        if hasattr(model, "get_input_embeddings"):
            return matmul_params(model)
        path = getattr(backend, "path", None) or self.model_dir()
        try:
            return params_from_config(str(path)) if path else None
        except (OSError, ValueError) as exc:
            print(f"note: parameter count unknown for {path}: {exc}", flush=True)
            return None


@dataclass
class Row:
    """One system on one workload: throughput, and the compute bound it is measured against."""

    variant: str
    backend: str
    mode: str
    candidates: int
    doc_tokens: int
    seconds: float
    docs_per_s: float
    gen_tokens_per_s: float | None
    naive_docs_per_s: float | None = None
    batching_speedup: float | None = None
    vs_fastest: float | None = None
    params: int | None = None
    tokens_per_doc: float | None = None
    peak_gflops: float | None = None
    peak_basis: str | None = None
    bound_docs_per_s: float | None = None
    bound_fraction: float | None = None
    prefix_cache_hit_rate: float | None = None

    def set_bound(self, params: int | None, tokens_per_doc: float | None, peak: tuple[float, str] | None) -> None:
        """The compute-bound fields (None where a figure is unknown); ``peak``: (GFLOP/s, what was timed)."""
        self.params = params
        self.tokens_per_doc = None if tokens_per_doc is None else round(tokens_per_doc, 1)
        if peak is not None:
            self.peak_gflops, self.peak_basis = round(peak[0], 1), peak[1]
        if params and tokens_per_doc and peak:
            gen = self.gen_tokens_per_s / self.docs_per_s if self.gen_tokens_per_s else 0.0
            docs, frac = compute_bound(self.docs_per_s, params, tokens_per_doc, peak[0], gen)
            self.bound_docs_per_s, self.bound_fraction = round(docs, 3), round(frac, 4)

    def add_naive(self, score_one: Callable[[str], Any], docs: Sequence[str]) -> None:
        """Time a per-document loop (one call, batch of one, per document): its docs/s and the batching speed-up."""
        t0 = time.perf_counter()
        for d in docs:
            score_one(d)
        self.naive_docs_per_s = round(len(docs) / (time.perf_counter() - t0), 3)
        self.batching_speedup = round(self.docs_per_s / self.naive_docs_per_s, 2)

    def line(self) -> str:
        """The row as ``key=value`` pairs (the known fields), printed as it is measured."""
        return " ".join(f"{k}={v}" for k, v in asdict(self).items() if v is not None)


@dataclass
class Bench:
    """One run's workload, shared by every system, and its compute-bound meter."""

    args: argparse.Namespace
    model: str  # what the backends load: --model, or the --random-arch directory
    arch_dir: Path | None
    modes: list[str]
    sizes: list[int]
    lengths: list[int]
    docs: list[str]
    meter: Meter
