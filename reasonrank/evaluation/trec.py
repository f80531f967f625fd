"""TREC-format I/O: runs (``qid Q0 docid rank score tag``) and qrels (``qid 0 docid relevance``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .collections import Run, _need_file

__all__ = ["write_trec_run", "read_trec_run", "write_qrels"]


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "reasonrank") -> Path:
    """Write a run in TREC format: ``qid Q0 docid rank score tag`` per line, ranks from 1 by score.

    Raises:
        ValueError: an id or the tag contains whitespace (TREC files are whitespace separated).
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be non-empty without whitespace, got {tag!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for q in sorted(run):
        for rank, (d, s) in enumerate(sorted(run[q].items(), key=lambda kv: -kv[1]), 1):
            if any(c.isspace() for c in q + d) or not q or not d:
                raise ValueError(f"ids in a TREC run must be non-empty without whitespace: query {q!r}, doc {d!r}")
            lines.append(f"{q} Q0 {d} {rank} {s!r} {tag}\n")
    out.write_text("".join(lines), encoding="utf-8")
    return out


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file written by :func:`write_trec_run` (or any trec_eval run)."""
    p = _need_file(Path(path), "run file", "pass the path of a TREC run (qid Q0 docid rank score tag)")
    run: Run = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise ValueError(f"{p}:{n} must have 6 columns (qid Q0 docid rank score tag), got {len(cols)}")
        run.setdefault(cols[0], {})[cols[2]] = float(cols[4])
    return run


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    """Write qrels in TREC format (``qid 0 docid relevance``), e.g. for trec_eval."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{q} 0 {d} {r}\n" for q in sorted(qrels) for d, r in sorted(qrels[q].items())),
                   encoding="utf-8")
    return out
