#!/usr/bin/env python
"""Peak memory of direct scoring under a token budget per batch (``max_batch_tokens``).

Each budget runs in a fresh process (peak RSS, ``ru_maxrss``, only grows), after a warm-up call; the figure
to read is how far the scoring peak rises above the peak of loading the model (docs/benchmarks.md,
"Token-budget batches")::

    OMP_NUM_THREADS=1 python benchmarks/batch_memory.py --budgets none,16384,4096 --docs 32 --doc-tokens 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(model: str, budget: int | None, docs: int, doc_tokens: int, batch_size: int) -> dict[str, object]:
    """Score ``docs`` synthetic documents in this process; peak RSS before and after, docs/s."""
    sys.path.insert(0, str(Path(__file__).parent))
    from throughput_workload import QUERY, make_docs

    from reasonrank import ReasoningReranker

    rr = ReasoningReranker(model, batch_size=batch_size, max_batch_tokens=budget, max_doc_tokens=doc_tokens,
                           fusion_weight=0)
    rr.score("warm up", ["a short document"])
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    rr.score(QUERY, make_docs(docs))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"max_batch_tokens": budget, "load_peak_mib": round(loaded), "peak_rss_mib": round(peak),
            "above_load_mib": round(peak - loaded), "docs_per_s": round(docs / seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="reasonrank-tiny")
    ap.add_argument("--budgets", default="none,16384,4096", help="comma-separated max_batch_tokens ('none': no cap)")
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--doc-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one budget here
    args = ap.parse_args(argv)
    if args.one is not None:
        budget = None if args.one == "none" else int(args.one)
        print(json.dumps(measure(args.model, budget, args.docs, args.doc_tokens, args.batch_size)))
        return 0
    for b in args.budgets.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", b, "--model", args.model, "--docs", str(args.docs),
                              "--doc-tokens", str(args.doc_tokens), "--batch-size", str(args.batch_size)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
