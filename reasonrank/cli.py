"""Command line: ``reasonrank rerank --model M --query Q --docs FILE.jsonl``."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import JsonlError, parse_jsonl, read_jsonl
from .models import DEFAULT_MODEL, LOCAL_SMOLLM2
from .options import parse_options
from .serve.config import add_serve_parser, add_weight_options  # light: no FastAPI import

__all__ = ["bm25_first_stage", "main", "read_docs"]


class DocsFileError(ValueError):
    """The documents file cannot be read; the message names the line and the fix."""


def read_docs(path: str, lines_out: list[int] | None = None) -> list[Any]:
    """Read documents from a JSONL file (one JSON object with ``text`` or a JSON string per line;
    blank lines skipped) or ``-`` for standard input; ``lines_out`` receives each document's line number."""
    if path == "-":
        rows = parse_jsonl(sys.stdin, "<stdin>", objects_only=False)
    else:
        if not Path(path).is_file():
            raise DocsFileError(f"documents file {path!r} not found; pass a JSONL file with one "
                                '{"id": ..., "text": ...} object per line')
        rows = read_jsonl(path, objects_only=False)
    docs = []
    try:
        for no, doc in rows:
            docs.append(doc)
            if lines_out is not None:
                lines_out.append(no)
    except JsonlError as exc:
        raise DocsFileError(f"{exc.source}:{exc.line_no}: not valid JSON ({exc.reason}); each line must be a JSON "
                            'object like {"id": "d1", "text": "..."} or a JSON string') from None
    return docs


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reasonrank", description="Reasoning reranker for retrieval pipelines.")
    sub = ap.add_subparsers(dest="command", required=True)
    rr = sub.add_parser("rerank", help="rerank documents for a query and print the ranking",
                        description="Rerank a JSONL file of documents for one query.")
    rr.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"hub id, local dir, .gguf file or {LOCAL_SMOLLM2!r} (default: {DEFAULT_MODEL})")
    rr.add_argument("--query", required=True)
    rr.add_argument("--docs", required=True, help="JSONL file (one {\"id\",\"text\"} object per line) or - for stdin")
    rr.add_argument("--top-k", type=int, default=None)
    rr.add_argument("--first-stage", choices=("none", "bm25"), default="none",
                    help="bm25: retrieve from --docs with BM25 first (needs reasonrank[bench]) and rerank the top "
                         "--first-stage-k, carrying each document's BM25 score (used by --fusion-weight)")
    rr.add_argument("--first-stage-k", type=int, default=None, help="documents the first stage keeps (default: all)")
    add_weight_options(rr, "first-stage scores: --first-stage bm25 or a 'score' per document")
    rr.add_argument("--mode", choices=("reasoning", "direct"), default=None,
                    help="default: the model's reasonrank.json, else reasoning")
    rr.add_argument("--backend", default="transformers")
    rr.add_argument("--labels", default=None,
                    help="label scale, e.g. 0,1,2 or 0,1 (default: the model's reasonrank.json, else 0,1,2)")
    rr.add_argument("--template", default=None, help="template name or YAML/JSON file")
    rr.add_argument("--batch-size", type=int, default=8)
    rr.add_argument("--max-new-tokens", type=int, default=256)
    rr.add_argument("--max-doc-tokens", type=int, default=1024)
    rr.add_argument("--on-parse-error", choices=("fallback", "raise", "report"), default="fallback")
    rr.add_argument("--device", default=None)
    rr.add_argument("--dtype", default=None)
    rr.add_argument("--backend-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="backend option (JSON-parsed when possible), repeatable, e.g. base_url=http://...")
    rr.add_argument("--explain", action="store_true",
                    help="direct mode: rank by the label probabilities (fast), then have the model explain each "
                         "shown result with the reasoning prompt (one generation per shown document)")
    rr.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    rr.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    add_serve_parser(sub)
    return ap


def _table(results: Sequence[Any], mode: str) -> str:
    width = max(60, min(shutil.get_terminal_size((120, 20)).columns, 160))
    head = f"{'rank':>4}  {'score':>6}  {'label':>5}  {'id':<14}  {'explanation' if mode == 'reasoning' else 'text'}"
    lines = [head, "-" * min(width, len(head) + 40)]
    room = max(20, width - 42)
    for r in results:
        body = (r.explanation or "") if mode == "reasoning" else r.text
        body = " ".join(body.split()) or "(no explanation)"
        flags = ("" if r.parse_ok else " [unparsed: label from probabilities]") + (" [truncated]" if r.truncated else "")
        row = f"{r.rank:>4}  {r.score:6.3f}  {r.label:>5}  {str(r.id if r.id is not None else r.index):<14.14}  "
        if mode == "reasoning":  # an explanation is read whole: wrapped under its column, never cut
            wrapped = textwrap.wrap(body + flags, room)
            lines += [row + wrapped[0], *(" " * len(row) + w for w in wrapped[1:])]
        else:  # a document: a one-line preview
            lines.append(row + textwrap.shorten(body, room, placeholder=" ...") + flags)
    return "\n".join(lines)


def reranker_from_args(args: argparse.Namespace, **extra: Any) -> Any:
    """The :class:`~reasonrank.ReasoningReranker` that ``rerank`` and ``serve`` build from their shared options
    (``extra``: the options only one of them has)."""
    from .reranker import ReasoningReranker

    labels = tuple(int(x) for x in args.labels.split(",")) if args.labels else None
    return ReasoningReranker(
        args.model, backend=args.backend, mode=args.mode, label_scale=labels, template=args.template,
        max_doc_tokens=args.max_doc_tokens, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        on_parse_error=args.on_parse_error, device=args.device, dtype=args.dtype,
        **parse_options(args.backend_opt), **extra)


def bm25_first_stage(query: str, docs: Sequence[Any], k: int | None = None) -> tuple[list[Any], list[int]]:
    """The top ``k`` documents (all when None) by BM25 over title + text, as :class:`~reasonrank.Document` with
    ``first_stage_score`` set (0.0 for a document sharing no term with the query), best first, and their
    positions in ``docs``."""
    import dataclasses

    from .evaluation import Collection, bm25_search
    from .schema import to_documents

    if k is not None and k < 1:
        raise ValueError(f"--first-stage-k must be >= 1, got {k}")
    documents = to_documents(docs)
    if not documents:
        return [], []
    col = Collection(name="cli", corpus={str(i): d for i, d in enumerate(documents)}, queries={"q": query}, qrels={})
    scores = bm25_search(col, k=len(documents))["q"]
    ranked = sorted(range(len(documents)), key=lambda i: (-scores.get(str(i), 0.0), i))[:k]
    return [dataclasses.replace(documents[i], first_stage_score=scores.get(str(i), 0.0)) for i in ranked], ranked


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        from .serve.server import serve_from_args

        return serve_from_args(args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from ._deps import MissingDependencyError
    from .parsing import ParseError

    lines: list[int] = []
    name = "<stdin>" if args.docs == "-" else args.docs
    try:
        docs = read_docs(args.docs, lines)
        reranker = reranker_from_args(args, fusion_weight=args.fusion_weight, prior_weight=args.prior_weight,
                                      likelihood_weight=args.likelihood_weight)
        if args.first_stage == "bm25":
            docs, order = bm25_first_stage(args.query, docs, args.first_stage_k)
            lines = [lines[i] for i in order]
        if args.explain and reranker.mode == "direct":  # explain every shown result (explain_top_k)
            reranker.explain_top_k = args.top_k or len(docs) or None
        results = reranker.rank(args.query, docs, top_k=args.top_k)
    except (DocsFileError, ValueError, TypeError, OSError, MissingDependencyError, ParseError, RuntimeError) as exc:
        # RuntimeError: a server's HTTP error or reply without logprobs, a failed request (one line, exit 2)
        if args.verbose:
            logging.getLogger(__name__).exception("reasonrank rerank failed")
        # a document's list index -> its line in the file
        msg = re.sub(r"docs\[(\d+)\]", lambda m: f"{name}:{lines[int(m.group(1))]}" if int(m.group(1)) < len(lines)
                     else m.group(0), str(exc))
        print(f"reasonrank: error: {msg}", file=sys.stderr)
        return 2
    if args.json:
        for r in results:
            print(json.dumps({"rank": r.rank, "index": r.index, "id": r.id, "score": r.score, "label": r.label,
                              "label_probs": list(r.label_probs), "model_score": r.model_score,
                              "first_stage_score": r.first_stage_score, "explanation": r.explanation,
                              "parse_ok": r.parse_ok, "truncated": r.truncated, "text": r.text}))
    else:
        print(_table(results, "reasoning" if any(r.explanation for r in results) else reranker.mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
