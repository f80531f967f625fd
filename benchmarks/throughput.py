#!/usr/bin/env python
"""Throughput benchmark: docs/s (and generated tokens/s) per backend and mode.

Every configuration reranks the same synthetic candidates (documents cut to exactly ``--doc-tokens``
tokens), so backends are compared on identical prompts in one run. With ``--naive`` a per-document
loop (one ``score`` call per document, batch of one) is timed on the same reranker and the batching
speed-up is printed as a ratio measured in the same run.

Examples (CPU, local SmolLM2)::

    python benchmarks/throughput.py --model smollm2-local --modes direct,reasoning --candidates 16 --naive
    # the CPU default against the old one (fp32, no prefix reuse), and explaining the top 3 only, in one run:
    python benchmarks/throughput.py --model reasonrank-tiny --candidates 32 --doc-tokens 128 \
        --variant default=transformers --variant fp32-whole=transformers:dtype=float32,reuse_prefix=false \
        --modes direct,explain3,reasoning
    python benchmarks/throughput.py --backends transformers,openai \
        --backend-opt openai.base_url=http://127.0.0.1:8000/v1 --backend-opt openai.tokenizer=smollm2-local

GPU variant (no weights needed: a random-initialised model of the real Qwen2.5-3B architecture)::

    python benchmarks/throughput.py --random-arch qwen2.5-3b --device cuda --backends transformers,vllm \
        --candidates 10,50,100 --doc-tokens 128,512 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonrank import ReasoningReranker
from reasonrank.options import OptionError, parse_option

QUERY = "how does bm25 rank documents for a search query"
_WORDS = ("retrieval ranking query document relevance score term frequency inverse collection index search engine "
          "neural model passage answer question evidence reasoning topic vector sparse dense length normalisation "
          "saturation parameter weighting corpus token embedding rerank candidate judgment label explanation").split()

# Qwen2.5-3B architecture (config.json of Qwen/Qwen2.5-3B-Instruct), weights random.
ARCHS: dict[str, dict[str, Any]] = {
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768,
                       vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}


@dataclass
class Row:
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


def make_docs(n: int, seed: int = 0) -> list[str]:
    """Distinct synthetic documents, long enough to be cut at any --doc-tokens used here."""
    rng = random.Random(seed)
    return [f"Document {i}. " + " ".join(rng.choice(_WORDS) for _ in range(900)) for i in range(n)]


def random_arch_dir(arch: str, root: Path) -> Path:
    """A model directory with the architecture's config.json and a locally trained tokenizer (no weights)."""
    from transformers import AutoConfig

    from reasonrank.testing import build_tiny_model

    tiny = build_tiny_model(root / "tokenizer-source")
    spec = dict(ARCHS[arch])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    out = root / arch
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out)
    for f in tiny.iterdir():
        if "token" in f.name or f.name.endswith(".jinja"):
            (out / f.name).write_bytes(f.read_bytes())
    return out


def build_reranker(backend: str, model: str, mode: str, args: argparse.Namespace, opts: dict[str, Any],
                   arch_dir: Path | None) -> ReasoningReranker:
    """``mode``: direct, reasoning, or ``explainN`` (direct ranking + explanations of the top N)."""
    explain = int(mode[len("explain"):]) if mode.startswith("explain") else None
    common = dict(mode="direct" if explain else mode, max_doc_tokens=args.doc_tokens_current,
                  max_new_tokens=args.max_new_tokens, **({"explain_top_k": explain} if explain else {}))
    if arch_dir is not None and backend == "transformers":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from reasonrank.backends.hf import TransformersBackend

        dtype = torch.bfloat16 if args.device and args.device.startswith("cuda") else torch.float32
        cfg = AutoConfig.from_pretrained(arch_dir)
        with torch.device(args.device or "cpu"):
            lm = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
        be = TransformersBackend(lm, tokenizer=AutoTokenizer.from_pretrained(arch_dir),
                                 batch_size=args.batch_size, **opts)
        return ReasoningReranker(backend=be, **common)
    if arch_dir is not None and backend == "vllm":
        opts = {"engine_kwargs": {"load_format": "dummy", **opts.pop("engine_kwargs", {})}, **opts}
    extra = {"device": args.device} if args.device and backend != "openai" else {}
    return ReasoningReranker(model, backend=backend, batch_size=args.batch_size, **extra, **opts, **common)


def measure(rr: ReasoningReranker, docs: list[str]) -> tuple[float, int]:
    """Seconds to rerank ``docs`` (``rank``: with ``explain_top_k`` that includes the explanations) and the
    tokens generated meanwhile."""
    explainer = rr.explainer if rr.explain_top_k else None
    before = rr.stats.generated_tokens + (explainer.stats.generated_tokens if explainer else 0)
    t0 = time.perf_counter()
    results = rr.rank(QUERY, docs)
    dt = time.perf_counter() - t0
    if len(results) != len(docs):
        raise RuntimeError(f"benchmark lost documents: {len(results)} results for {len(docs)} docs")
    after = rr.stats.generated_tokens + (explainer.stats.generated_tokens if explainer else 0)
    return dt, after - before


def parse_variant(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME=BACKEND[:KEY=VAL,...]`` -> (name, backend, options); values JSON-parsed when possible.

    Example:
        >>> parse_variant("fp32=transformers:dtype=float32,reuse_prefix=false")
        ('fp32', 'transformers', {'dtype': 'float32', 'reuse_prefix': False})
    """
    name, sep, rest = spec.partition("=")
    backend, _, items = rest.partition(":")
    if not sep or not name or not backend:
        raise SystemExit(f"--variant takes NAME=BACKEND[:KEY=VAL,...], got {spec!r}")
    out: dict[str, Any] = {}
    for item in filter(None, items.split(",")):
        try:
            key, value = parse_option(item)
        except OptionError as exc:
            raise SystemExit(f"--variant {spec!r}: {exc}") from None
        out[key] = value
    return name, backend, out


def parse_opts(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        try:
            key, parsed = parse_option(item)
        except OptionError:
            key, parsed = "", None
        backend, dot, name = key.partition(".")
        if not dot:
            raise SystemExit(f"--backend-opt takes BACKEND.KEY=VALUE (e.g. openai.base_url=http://...), got {item!r}")
        out.setdefault(backend, {})[name] = parsed
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-local", help="model for every backend (default: smollm2-local)")
    ap.add_argument("--backends", default="transformers", help="comma-separated backend names")
    ap.add_argument("--backend-opt", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                    help="backend option, JSON-parsed when possible (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=BACKEND[:KEY=VAL,...]",
                    help="a named configuration to time side by side (repeatable; replaces --backends), e.g. "
                         "fp32=transformers:dtype=float32,reuse_prefix=false")
    ap.add_argument("--modes", default="direct,reasoning",
                    help="comma-separated: direct, reasoning, explainN (direct + explanations of the top N)")
    ap.add_argument("--candidates", default="16", help="comma-separated candidate-list sizes, e.g. 10,50,100")
    ap.add_argument("--doc-tokens", default="128", help="comma-separated document lengths in tokens")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--naive", action="store_true", help="also time a per-document loop and print the speed-up")
    ap.add_argument("--naive-docs", type=int, default=8, help="documents timed in the naive loop")
    ap.add_argument("--random-arch", choices=sorted(ARCHS), default=None,
                    help="benchmark a random-initialised model of this architecture (no weights needed)")
    ap.add_argument("--warmup", type=int, default=2, help="documents scored once before timing each config")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    opts = parse_opts(args.backend_opt)
    variants = [parse_variant(v) for v in args.variant] or \
        [(b, b, dict(opts.get(b, {}))) for b in args.backends.split(",") if b]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in ("direct", "reasoning") and not (m.startswith("explain") and
                                                                        m[len("explain"):].isdigit())]
    if bad:
        raise SystemExit(f"--modes: unknown mode {bad[0]!r}; use direct, reasoning or explainN (e.g. explain3)")
    sizes = [int(x) for x in args.candidates.split(",")]
    lengths = [int(x) for x in args.doc_tokens.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="rr-bench-")
    arch_dir = random_arch_dir(args.random_arch, Path(tmp.name)) if args.random_arch else None
    model = str(arch_dir) if arch_dir else args.model
    docs_all = make_docs(max(sizes))
    rows: list[Row] = []
    for name, backend, vopts in variants:
        for mode in modes:
            for doc_tokens in lengths:
                args.doc_tokens_current = doc_tokens
                rr = build_reranker(backend, model, mode, args, dict(vopts), arch_dir)
                measure(rr, docs_all[: args.warmup])  # warm-up: kernels, caches, server connection
                for n in sizes:
                    dt, gen = measure(rr, docs_all[:n])
                    row = Row(name, backend, mode, n, doc_tokens, round(dt, 6), round(n / dt, 3),
                              round(gen / dt, 1) if mode != "direct" else None)
                    if args.naive:
                        k = min(n, args.naive_docs)
                        t0 = time.perf_counter()
                        for d in docs_all[:k]:
                            rr.score(QUERY, [d])
                        naive = k / (time.perf_counter() - t0)
                        row.naive_docs_per_s = round(naive, 3)
                        row.batching_speedup = round(row.docs_per_s / naive, 2)
                    rows.append(row)
                    print(_fmt(row), flush=True)
                rr.close()
    for r in rows:  # each workload's fastest configuration = 1.00
        best = max(o.docs_per_s for o in rows if (o.candidates, o.doc_tokens) == (r.candidates, r.doc_tokens))
        r.vs_fastest = round(r.docs_per_s / best, 3)
    print()
    print(f"query: {QUERY!r}; model: {args.random_arch or args.model}; batch_size={args.batch_size}; "
          f"max_new_tokens={args.max_new_tokens}")
    print(_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    tmp.cleanup()
    return 0


def _fmt(r: Row) -> str:
    return " ".join(f"{k}={v}" for k, v in asdict(r).items() if v is not None)


def _table(rows: list[Row]) -> str:
    head = ["variant", "backend", "mode", "cands", "doc_tok", "docs/s", "vs fastest", "gen tok/s", "naive docs/s",
            "batch speed-up"]
    body = [[r.variant, r.backend, r.mode, str(r.candidates), str(r.doc_tokens), f"{r.docs_per_s:.2f}",
             "-" if r.vs_fastest is None else f"{r.vs_fastest:.2f}x",
             "-" if r.gen_tokens_per_s is None else f"{r.gen_tokens_per_s:.1f}",
             "-" if r.naive_docs_per_s is None else f"{r.naive_docs_per_s:.2f}",
             "-" if r.batching_speedup is None else f"{r.batching_speedup:.2f}x"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
