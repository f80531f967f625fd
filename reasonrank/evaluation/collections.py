"""Test collections: the in-memory :class:`Collection` and its loaders (BEIR layout, BRIGHT).

Loaders check their input and name the fix; judgments of unknown queries or documents are dropped with a
counted warning. BRIGHT parquet files are read with ``pyarrow`` from the ``bench`` extra.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._deps import require
from ..io import read_jsonl
from ..schema import Document

__all__ = ["Collection", "Run", "Qrels", "load_beir", "load_beir_unjudged", "load_bright"]

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Collection:
    """A test collection held in memory.

    Attributes:
        name: Short name used in reports and run tags.
        corpus: ``doc_id -> Document`` (the document's ``id`` equals its key).
        queries: ``query_id -> query text``; only judged queries are kept by the loaders.
        qrels: ``query_id -> {doc_id: graded relevance}`` (0 = judged non-relevant).
        excluded: ``query_id -> doc ids`` that must never be retrieved for it (BRIGHT's ``excluded_ids``).
    """

    name: str
    corpus: Mapping[str, Document]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]
    excluded: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise ValueError(f"collection {self.name!r} has an empty corpus; check the corpus file")
        if not self.queries:
            raise ValueError(f"collection {self.name!r} has no (judged) queries; check the queries and qrels files")

    def subset(self, max_queries: int) -> Collection:
        """The first ``max_queries`` queries (sorted ids), same corpus: for quick smoke runs."""
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        keep = sorted(self.queries)[:max_queries]
        return Collection(name=self.name, corpus=self.corpus, queries={q: self.queries[q] for q in keep},
                          qrels={q: self.qrels[q] for q in keep if q in self.qrels},
                          excluded={q: self.excluded[q] for q in keep if q in self.excluded})

    def describe(self) -> str:
        """One line: name, sizes and judged pairs."""
        pairs = sum(len(v) for v in self.qrels.values())
        return f"{self.name}: {len(self.corpus)} documents, {len(self.queries)} queries, {pairs} judgments"



# ---------------------------------------------------------------------------------------------- loading
def _need_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file() and path.suffix == ".jsonl" and path.with_suffix(".jsonl.gz").is_file():
        return path.with_suffix(".jsonl.gz")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}; {hint}")
    return path


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of a (possibly gzipped) JSONL file; a malformed line raises ValueError naming path:line."""
    return (row for _, row in read_jsonl(path))


def _field(row: Mapping[str, Any], keys: Sequence[str], where: str) -> Any:
    for k in keys:
        if k in row:
            return row[k]
    raise ValueError(f"{where} has none of the fields {', '.join(keys)}; found {', '.join(map(str, row)) or 'none'}")


def _check_qrels(name: str, qrels: Qrels, corpus: Mapping[str, Document], queries: Mapping[str, str]) -> Qrels:
    """Drop (with a counted warning) judgments of unknown queries/documents; drop empty queries."""
    unknown_q = [q for q in qrels if q not in queries]
    if unknown_q:
        logger.warning("%s: %d qrels queries are not in the queries file and are ignored (e.g. %s)", name,
                       len(unknown_q), unknown_q[0])
    missing_docs = 0
    example = None
    out: Qrels = {}
    for q, judged in qrels.items():
        if q not in queries:
            continue
        kept = {}
        for d, rel in judged.items():
            if d in corpus:
                kept[d] = rel
            else:
                missing_docs += 1
                example = example or d
        if kept:
            out[q] = kept
    if missing_docs:
        logger.warning("%s: %d judgments name documents that are not in the corpus and are ignored (e.g. %s); "
                       "check that qrels and corpus come from the same collection version", name, missing_docs,
                       example)
    return out


def _collection_dir(path: str | Path) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"collection directory {root} does not exist; pass the folder that holds "
                                "corpus.jsonl, queries.jsonl and qrels/")
    return root


def _beir_corpus_and_queries(root: Path, hint: str) -> tuple[dict[str, Document], dict[str, str]]:
    """``corpus.jsonl`` (empty documents skipped with a warning) and ``queries.jsonl`` of a BEIR folder."""
    corpus: dict[str, Document] = {}
    cpath = _need_file(root / "corpus.jsonl", "corpus.jsonl", hint)
    for row in _read_jsonl(cpath):
        did = str(_field(row, ("_id", "id", "doc_id"), f"a line of {cpath}"))
        text = str(_field(row, ("text", "contents", "content"), f"document {did} in {cpath}") or "")
        title = str(row.get("title") or "") or None
        if not text.strip() and not title:
            logger.warning("%s: document %s is empty and is skipped", cpath, did)
            continue
        corpus[did] = Document(text=text, id=did, title=title)
    qpath = _need_file(root / "queries.jsonl", "queries.jsonl", hint)
    queries = {str(_field(r, ("_id", "id", "query_id"), f"a line of {qpath}")):
               str(_field(r, ("text", "query"), f"a line of {qpath}")) for r in _read_jsonl(qpath)}
    return corpus, queries


def load_beir_unjudged(path: str | Path, *, name: str | None = None) -> Collection:
    """Corpus and *all* queries of a BEIR-layout folder, without qrels (e.g. for teacher labelling).

    Raises:
        FileNotFoundError: the folder, ``corpus.jsonl`` or ``queries.jsonl`` is missing.
    """
    root = _collection_dir(path)
    corpus, queries = _beir_corpus_and_queries(root, "a BEIR collection folder holds corpus.jsonl and "
                                                     "queries.jsonl")
    return Collection(name=name or root.name, corpus=corpus, queries=queries, qrels={})


def load_beir(path: str | Path, split: str = "test", *, name: str | None = None) -> Collection:
    """Load a collection in BEIR layout.

    ``path/corpus.jsonl`` (``_id``, ``title``, ``text``), ``path/queries.jsonl`` (``_id``, ``text``) and
    ``path/qrels/<split>.tsv`` (tab-separated ``query-id corpus-id score`` with a header row); gzipped
    ``corpus.jsonl.gz`` / ``queries.jsonl.gz`` are read too. Only queries
    judged in the split are kept. Judgments of unknown queries or documents are dropped with a warning.

    Raises:
        FileNotFoundError: a file of the layout is missing (the message names it).
        ValueError: malformed lines, or nothing left to evaluate.
    """
    root = _collection_dir(path)
    hint = "a BEIR collection folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
    corpus, queries = _beir_corpus_and_queries(root, hint)
    qrels_file = root / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise FileNotFoundError(f"qrels for split {split!r} not found at {qrels_file}; "
                                + (f"available splits: {', '.join(have)}" if have else hint))
    qrels: Qrels = {}
    with qrels_file.open(encoding="utf-8", newline="") as fh:
        for n, cols in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not cols or not "".join(cols).strip():
                continue
            if n == 1 and not cols[-1].strip().lstrip("-").isdigit():
                continue  # header row
            if len(cols) != 3:
                raise ValueError(f"{qrels_file}:{n} must have 3 tab-separated columns (query-id, corpus-id, "
                                 f"score), got {len(cols)}")
            try:
                rel = int(cols[2])
            except ValueError as exc:
                raise ValueError(f"{qrels_file}:{n}: relevance {cols[2]!r} is not an integer") from exc
            qrels.setdefault(cols[0].strip(), {})[cols[1].strip()] = rel
    qrels = _check_qrels(name or root.name, qrels, corpus, queries)
    queries = {q: t for q, t in queries.items() if q in qrels}
    return Collection(name=name or root.name, corpus=corpus, queries=queries, qrels=qrels)


def _bright_rows(root: Path, config: str, domain: str) -> list[dict[str, Any]]:
    folder = root / config
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; a local BRIGHT copy holds documents/, long_documents/ "
                                "and examples/ folders of <domain>-*.parquet (or <domain>.jsonl) files, e.g. from "
                                "`hf download xlangai/BRIGHT --repo-type dataset --local-dir PATH`")
    files = sorted(folder.glob(f"{domain}.jsonl")) or sorted(folder.glob(f"{domain}-*.parquet")) \
        or sorted(folder.glob(f"{domain}.parquet"))
    if not files:
        have = sorted({p.name.split("-")[0].removesuffix(".jsonl").removesuffix(".parquet")
                       for p in folder.iterdir() if p.suffix in (".jsonl", ".parquet")})
        raise FileNotFoundError(f"no {domain!r} file in {folder}; available domains: {', '.join(have) or 'none'}")
    rows: list[dict[str, Any]] = []
    for f in files:
        if f.suffix == ".jsonl":
            rows.extend(_read_jsonl(f))
        else:
            pq = require("pyarrow.parquet", "bench", purpose="reading BRIGHT parquet files")
            rows.extend(pq.read_table(f).to_pylist())
    return rows


def load_bright(path: str | Path, domain: str, *, long_documents: bool = False,
                query_field: str = "query") -> Collection:
    """Load one BRIGHT domain from a local copy of the ``xlangai/BRIGHT`` dataset repository.

    Layout: ``path/documents/<domain>-*.parquet`` (``id``, ``content``), ``path/examples/<domain>-*.parquet``
    (``id``, ``query``, ``gold_ids``, ``gold_ids_long``, ``excluded_ids``, ...) and, with
    ``long_documents=True``, ``path/long_documents/<domain>-*.parquet``. ``<domain>.jsonl`` files with the
    same fields are read too. Gold documents get relevance 1; ``excluded_ids`` are kept in
    :attr:`Collection.excluded` and removed from first-stage runs, as BRIGHT's own evaluation does.

    Args:
        path: The dataset folder.
        domain: E.g. ``"biology"``, ``"leetcode"``, ``"theoremqa_theorems"``.
        long_documents: Use whole web pages (``long_documents`` + ``gold_ids_long``).
        query_field: The examples column used as query text (``"query"``; reasoning-augmented copies of
            BRIGHT store their rewritten query in the same column of another config folder).
    """
    root = Path(path)
    config, gold_key = ("long_documents", "gold_ids_long") if long_documents else ("documents", "gold_ids")
    corpus = {}
    for row in _bright_rows(root, config, domain):
        did = str(_field(row, ("id", "_id"), f"a {config} row"))
        text = str(_field(row, ("content", "text"), f"document {did}") or "")
        if text.strip():
            corpus[did] = Document(text=text, id=did)
    queries: dict[str, str] = {}
    qrels: Qrels = {}
    excluded: dict[str, frozenset[str]] = {}
    for row in _bright_rows(root, "examples", domain):
        qid = str(_field(row, ("id", "_id"), "an examples row"))
        queries[qid] = str(_field(row, (query_field,), f"example {qid}"))
        qrels[qid] = {str(d): 1 for d in (row.get(gold_key) or [])}
        ex = frozenset(str(d) for d in (row.get("excluded_ids") or []) if str(d) != "N/A")
        if ex:
            excluded[qid] = ex
    name = f"bright-{domain}" + ("-long" if long_documents else "")
    qrels = _check_qrels(name, qrels, corpus, queries)
    queries = {q: t for q, t in queries.items() if q in qrels}
    return Collection(name=name, corpus=corpus, queries=queries, qrels=qrels,
                      excluded={q: e for q, e in excluded.items() if q in queries})
