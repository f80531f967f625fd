"""Offline evaluation: load a test collection, retrieve a first stage, rerank it, score it with standard IR measures.

A *run* is ``{query_id: {doc_id: score}}`` (higher is better), the shape used by ``ir-measures``,
``pytrec_eval`` and BEIR; *qrels* are ``{query_id: {doc_id: graded_relevance}}``.

Typical use (the ``bench`` extra: ``pip install "reasonrank[bench]"``)::

    from reasonrank import ReasoningReranker
    from reasonrank.evaluation import bm25_search, evaluate, load_beir, rerank_run

    col = load_beir("benchmarks/data/sample-beir")
    first = bm25_search(col, k=100)
    reranked = rerank_run(ReasoningReranker("smollm2-local", mode="direct"), col, first, k=20)
    print(evaluate(col.qrels, first)[0], evaluate(col.qrels, reranked)[0])

Loaders check their input and name the fix; retrieval and scoring use ``bm25s``, ``ir-measures``, ``pyarrow``
(BRIGHT parquet files) from the ``bench`` extra and ``sentence-transformers`` from the ``dense`` extra, each
imported lazily through :func:`reasonrank._deps.require`.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._deps import require
from .schema import Document, RerankResult

if TYPE_CHECKING:  # pragma: no cover
    from .reranker import ReasoningReranker

__all__ = ["Collection", "Run", "Qrels", "DEFAULT_MEASURES", "load_beir", "load_beir_unjudged", "load_bright", "bm25_search",
           "dense_search", "rerank_run", "evaluate", "write_trec_run", "read_trec_run", "write_qrels"]

logger = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]
DEFAULT_MEASURES: tuple[str, ...] = ("nDCG@10", "RR@10", "R@100")
# Reranker ties are broken by first-stage order, like ReasoningReranker.rank: this offset per first-stage
# position is far below any score difference a model produces, but makes the ordering (and trec_eval's,
# which otherwise breaks ties by doc id) deterministic.
_TIE_EPS = 1e-9


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
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n} is not valid JSON ({exc.msg}); each line must be one JSON object") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n} must be a JSON object, got {type(row).__name__}")
            yield row


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


# -------------------------------------------------------------------------------------------- retrieval
def _progress(it: Iterable[Any], *, enabled: bool, total: int | None = None, desc: str = "") -> Iterable[Any]:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, disable=not logger.isEnabledFor(logging.WARNING))


def _top(hits: Iterable[tuple[str, float]], excluded: frozenset[str], k: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for did, s in hits:
        if did not in excluded:
            out[did] = float(s)
            if len(out) == k:
                break
    return out


def bm25_search(collection: Collection, k: int = 100, *, k1: float = 1.5, b: float = 0.75,
                stopwords: str | None = "en", progress: bool = False) -> Run:
    """BM25 (``bm25s``, Lucene variant) over title + text; documents with no term overlap are not returned.

    Returns:
        ``{query_id: {doc_id: bm25 score}}`` with at most ``k`` documents per query (excluded ids removed).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    bm25s = require("bm25s", "bench", purpose="BM25 first-stage retrieval")
    bm25_logger = logging.getLogger("bm25s")
    if bm25_logger.level == logging.DEBUG:  # bm25s sets DEBUG at import, which floods applications' logs
        bm25_logger.setLevel(logging.WARNING)
    ids = list(collection.corpus)
    texts = [collection.corpus[d].prompt_text for d in ids]
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(bm25s.tokenize(texts, stopwords=stopwords, show_progress=progress), show_progress=progress)
    qids = list(collection.queries)
    run: Run = {}
    extra = max((len(collection.excluded.get(q, ())) for q in qids), default=0)
    depth = min(len(ids), k + extra)
    tokens = bm25s.tokenize([collection.queries[q] for q in qids], stopwords=stopwords, show_progress=False)
    idx, scores = retriever.retrieve(tokens, k=depth, show_progress=progress)
    for row, q in enumerate(qids):
        hits = ((ids[int(i)], float(s)) for i, s in zip(idx[row], scores[row]) if s > 0)
        run[q] = _top(hits, collection.excluded.get(q, frozenset()), k)
    empty = sum(1 for v in run.values() if not v)
    if empty:
        logger.warning("BM25 found no document for %d of %d queries (no query term in the corpus)", empty, len(qids))
    return run


def dense_search(collection: Collection, model: str, k: int = 100, *, batch_size: int = 32,
                 query_prefix: str = "", doc_prefix: str = "", progress: bool = False,
                 device: str | None = None) -> Run:
    """Exact dense retrieval with a ``sentence-transformers`` bi-encoder (cosine similarity).

    Args:
        model: A sentence-transformers model id or local directory.
        query_prefix: / doc_prefix: Text put before queries / documents (e.g. ``"query: "`` for E5).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    st = require("sentence_transformers", "dense", purpose="dense first-stage retrieval")
    np = require("numpy", "bench")
    encoder = st.SentenceTransformer(model, device=device)
    ids = list(collection.corpus)
    doc_emb = encoder.encode([doc_prefix + collection.corpus[d].prompt_text for d in ids], batch_size=batch_size,
                             normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True)
    qids = list(collection.queries)
    q_emb = encoder.encode([query_prefix + collection.queries[q] for q in qids], batch_size=batch_size,
                           normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
    sims = q_emb @ doc_emb.T
    run: Run = {}
    for row, q in enumerate(qids):
        excl = collection.excluded.get(q, frozenset())
        order = np.argsort(-sims[row], kind="stable")[: k + len(excl)]
        run[q] = _top(((ids[int(i)], float(sims[row, i])) for i in order), excl, k)
    return run


# ---------------------------------------------------------------------------------------------- rerank
def _ordered(docs: Mapping[str, float]) -> list[str]:
    return [d for d, _ in sorted(docs.items(), key=lambda kv: -kv[1])]


def rerank_run(reranker: ReasoningReranker, collection: Collection, first_stage: Mapping[str, Mapping[str, float]],
               *, k: int = 100, progress: bool = True,
               results: dict[str, list[RerankResult]] | None = None) -> Run:
    """Rerank the top ``k`` documents of each query of ``first_stage`` with :meth:`ReasoningReranker.score`.

    The reranked documents are ordered by reranker score (ties keep first-stage order); documents the
    backend failed on follow them; documents of the first stage beyond ``k`` keep their order *below* all
    reranked ones (negative scores), so the run stays comparable with the first stage at any depth.

    Args:
        reranker: The reranker.
        collection: Supplies the query and document texts.
        first_stage: The run to rerank (e.g. from :func:`bm25_search`).
        k: Rerank depth.
        progress: Show a progress bar over queries.
        results: If a dict is given, it receives ``query_id -> [RerankResult, ...]`` (in first-stage order),
            with labels and explanations, e.g. to save them next to the run.

    Returns:
        The reranked run.

    Raises:
        KeyError: a query or document of ``first_stage`` is not in the collection (the message names it).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    out: Run = {}
    for q in _progress(list(first_stage), enabled=progress, desc=f"rerank {collection.name}"):
        if q not in collection.queries:
            raise KeyError(f"query {q!r} of the first-stage run is not in collection {collection.name!r}; "
                           "rerank a run produced on the same collection")
        ranked = _ordered(first_stage[q])
        head, tail = ranked[:k], ranked[k:]
        missing = [d for d in head if d not in collection.corpus]
        if missing:
            raise KeyError(f"document {missing[0]!r} (query {q!r}) is not in the corpus of {collection.name!r}; "
                           "rerank a run produced on the same collection")
        scored = reranker.score(collection.queries[q], [collection.corpus[d] for d in head]) if head else []
        if results is not None:
            results[q] = scored
        # documents the backend failed on (RerankResult.error set) go below the judged ones, above the tail
        run_q = {d: (-0.5 if getattr(r, "error", None) else r.score) - _TIE_EPS * pos
                 for pos, (d, r) in enumerate(zip(head, scored))}
        run_q.update({d: -1.0 - pos for pos, d in enumerate(tail)})
        out[q] = run_q
    return out


# -------------------------------------------------------------------------------------------- measures
def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             measures: Sequence[str] = DEFAULT_MEASURES) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a run with ``ir-measures`` (trec_eval semantics: graded gains, relevance >= 1 is relevant).

    Every query of ``qrels`` that has at least one relevant document is evaluated; a query the run misses
    scores 0 on every measure (rather than being silently skipped). The aggregate is the mean over
    those queries.

    Args:
        qrels: ``{query_id: {doc_id: relevance}}``.
        run: ``{query_id: {doc_id: score}}``.
        measures: ir-measures names, e.g. ``"nDCG@10"``, ``"RR@10"``, ``"R@100"``, ``"AP"``, ``"P@5"``.

    Returns:
        ``(aggregate, per_query)``: ``{measure: mean}`` and ``{query_id: {measure: value}}``.

    Example:
        >>> agg, per_q = evaluate({"q": {"a": 1}}, {"q": {"b": 2.0, "a": 1.0}}, ["RR@10"])
        >>> agg["RR@10"], per_q["q"]["RR@10"]
        (0.5, 0.5)
    """
    irm = require("ir_measures", "bench", purpose="evaluation measures")
    if not measures:
        raise ValueError("measures is empty; pass names such as ('nDCG@10', 'RR@10')")
    try:
        parsed = [irm.parse_measure(m) for m in measures]
    except Exception as exc:  # ir_measures raises several types for bad names
        raise ValueError(f"unknown measure in {list(measures)} ({exc}); use ir-measures names such as "
                         "'nDCG@10', 'RR@10', 'R@100', 'AP'") from exc
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items() if any(r > 0 for r in docs.values())}
    if not judged:
        raise ValueError("qrels have no relevant (relevance >= 1) judgment; nothing can be evaluated")
    dropped = len(qrels) - len(judged)
    if dropped:
        logger.info("%d queries without any relevant document are not evaluated", dropped)
    clean_run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in judged and docs}
    per_query: dict[str, dict[str, float]] = {q: {m: 0.0 for m in measures} for q in judged}
    names = dict(zip(map(str, parsed), measures))
    if clean_run:
        for metric in irm.iter_calc(parsed, judged, clean_run):
            per_query[metric.query_id][names[str(metric.measure)]] = float(metric.value)
    missing = len(judged) - len(clean_run)
    if missing:
        logger.warning("%d of %d judged queries have no documents in the run; they score 0", missing, len(judged))
    agg = {m: math.fsum(v[m] for v in per_query.values()) / len(per_query) for m in measures}
    return agg, per_query


# ------------------------------------------------------------------------------------------------- I/O
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
