"""``generate``: labelled (query, document) pairs from a local collection.

Candidate lists per query: the judged documents of the split first, then negatives (BM25 hard negatives
or random documents) up to ``candidates_per_query``. Labels come from

* ``source: teacher`` - any reasonrank backend (``openai`` for a served teacher such as Llama-3.3-70B,
  ``vllm``, ``transformers``) through :class:`reasonrank.ReasoningReranker` in reasoning mode: the
  teacher's explanation and graded label are stored in the InteRank format;
* ``source: qrels`` - the gold judgments (grades above the scale clipped to its top; unjudged negatives 0).

With ``pairs:`` the teacher explains gold-labelled examples (``train.jsonl`` of ``reasonrank-train data``)
instead; every record keeps ``gold_label`` and ``teacher_label``, and ``agree_only`` keeps only the
explanations whose verdict agrees with the gold label (the rest go to ``<output>.rejected.jsonl``).

The output jsonl is appended to query by query (flushed), so an interrupted run resumes where it stopped;
pairs already in the file are skipped (deduplicated by query id + document id).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reasonrank.evaluation import Collection, bm25_search, load_beir, load_beir_unjudged, load_bright

from .config import ConfigError, GenerateConfig
from .data import Example, example_key, iter_jsonl, read_examples

__all__ = ["GenerateStats", "load_collection", "run_generate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateStats:
    """What a ``generate`` run did."""

    queries: int
    written: int
    skipped_existing: int
    parse_failures: int
    output: str
    disagreements: int = 0
    seconds: float = 0.0


def load_collection(cfg: GenerateConfig) -> Collection:
    """The collection of a generate config (BEIR split or BRIGHT domain), cut to ``max_queries``."""
    root = Path(cfg.corpus or "")
    if cfg.collection_format == "bright":
        col = load_bright(root, cfg.bright_domain or "")
    elif (root / "qrels" / f"{cfg.split}.tsv").is_file():
        col = load_beir(root, cfg.split)
    elif cfg.source == "teacher":
        logger.info("no qrels/%s.tsv in %s: the teacher labels BM25/random candidates of every query",
                    cfg.split, root)
        col = load_beir_unjudged(root)
    else:
        raise ConfigError(f"source: qrels needs {root}/qrels/{cfg.split}.tsv; set `split:` to an existing split "
                          "or use source: teacher")
    return col.subset(cfg.max_queries) if cfg.max_queries else col


def _candidates(cfg: GenerateConfig, col: Collection) -> dict[str, list[str]]:
    n = cfg.candidates_per_query
    negatives: dict[str, list[str]] = {}
    if cfg.negatives == "bm25":
        run = bm25_search(col, k=n)
        negatives = {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in run.items()}
    ids = sorted(col.corpus)
    rng = random.Random(cfg.seed)
    out: dict[str, list[str]] = {}
    for q in sorted(col.queries):
        judged = sorted(col.qrels.get(q, {}), key=lambda d: (-col.qrels[q][d], d))[:n]
        excluded = col.excluded.get(q, frozenset())
        picked = list(dict.fromkeys(judged))
        pool = negatives.get(q, []) if cfg.negatives == "bm25" else rng.sample(ids, min(len(ids), 4 * n))
        for d in pool:
            if len(picked) >= n:
                break
            if d not in picked and d not in excluded:
                picked.append(d)
        out[q] = picked
    return out


def _rejects_path(out: Path) -> Path:
    """Where teacher outputs that were not kept go (unparsed, or disagreeing with the gold label)."""
    return out.with_name(out.stem + ".rejected.jsonl")


def _existing(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {example_key(str(r.get("qid")), str(r.get("docid"))) for _, r in iter_jsonl(path)}


def _repair_tail(path: Path) -> None:
    """Drop a partial last line left by an interrupted run, so appended records start on a new line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def _teacher(cfg: GenerateConfig) -> Any:
    from reasonrank import ReasoningReranker

    from .modeling import TINY_RANDOM, resolve_train_model

    model = resolve_train_model(TINY_RANDOM) if cfg.teacher_model == TINY_RANDOM else cfg.teacher_model or ""
    return ReasoningReranker(model, backend=cfg.teacher_backend, mode="reasoning",
                             label_scale=cfg.label_scale, max_doc_tokens=cfg.max_doc_tokens,
                             max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                             on_parse_error="fallback" if cfg.keep_failures else "report",  # no wasted 2nd pass
                             **dict(cfg.teacher_options))


def _pair_tasks(cfg: GenerateConfig) -> tuple[dict[str, str], dict[str, list[tuple[str, Example]]]]:
    """Queries and (docid, gold example) lists to explain, from a gold-labelled ``pairs`` file."""
    by_q: dict[str, list[Example]] = {}
    for ex in read_examples(cfg.pairs or "", labels=cfg.label_scale):
        ex = replace(ex, source="gold", gold_label=ex.label, origin=ex.origin or ex.source)
        by_q.setdefault(ex.qid, []).append(ex)
    qids = sorted(by_q)
    if cfg.pairs_queries is not None and cfg.pairs_queries < len(qids):
        random.Random(cfg.seed).shuffle(qids)  # a larger pairs_queries later extends the same sample
        qids = sorted(qids[:cfg.pairs_queries])
    tasks: dict[str, list[tuple[str, Example]]] = {}
    for q in qids:
        pos = [e for e in by_q[q] if e.label > 0]
        neg = [e for e in by_q[q] if e.label <= 0]  # in file order: mined hard negatives first, random last
        if cfg.pairs_negative == "random":
            neg = neg[::-1]
        mixed = [e for pair in zip(pos, neg) for e in pair] + pos[len(neg):] + neg[len(pos):]
        tasks[q] = [(e.docid, e) for e in mixed[:cfg.pairs_per_query]]  # a positive, a negative, ...
    return {q: by_q[q][0].query for q in qids}, tasks


def _collection_tasks(cfg: GenerateConfig) -> tuple[dict[str, str], dict[str, list[tuple[str, Example]]]]:
    col = load_collection(cfg)
    top = cfg.label_scale[-1]
    tasks: dict[str, list[tuple[str, Example]]] = {}
    for q, docs in _candidates(cfg, col).items():
        judged = col.qrels.get(q, {})
        row = []
        for d in docs:
            doc = col.corpus[d]
            gold = min(max(int(judged[d]), 0), top) if d in judged else (0 if cfg.source == "qrels" else None)
            row.append((d, Example(qid=q, docid=d, query=col.queries[q], text=doc.text, title=doc.title,
                                   label=gold if gold is not None else 0, source="qrels", gold_label=gold)))
        tasks[q] = row
    return dict(col.queries), tasks


def run_generate(cfg: GenerateConfig, *, teacher: Any = None) -> GenerateStats:
    """Write labelled pairs to ``cfg.output`` (resumable, deduplicated).

    Every record keeps the gold label (``gold_label``) when one is known; a teacher record also keeps the
    teacher's verdict (``teacher_label``) and its explanation. With ``agree_only`` a teacher record is kept
    only when the two agree.

    Args:
        cfg: The generate config.
        teacher: A ready :class:`reasonrank.ReasoningReranker` in reasoning mode (default: built from
            ``teacher_model``/``teacher_backend``/``teacher_options``).
    """
    queries, cands = _pair_tasks(cfg) if cfg.pairs else _collection_tasks(cfg)
    out = Path(cfg.output or "")
    out.parent.mkdir(parents=True, exist_ok=True)
    _repair_tail(out)
    done = _existing(out) | _existing(_rejects_path(out))
    todo = {q: [(d, ex) for d, ex in docs if example_key(q, d) not in done] for q, docs in cands.items()}
    skipped = sum(len(docs) for docs in cands.values()) - sum(len(docs) for docs in todo.values())
    if skipped:
        logger.info("resuming: %d pairs already in %s are skipped", skipped, out)
    todo = {q: docs for q, docs in todo.items() if docs}
    own_teacher = teacher is None and cfg.source == "teacher" and bool(todo)
    if own_teacher:
        teacher = _teacher(cfg)
    written = failures = disagreements = 0
    started = time.time()
    from tqdm.auto import tqdm

    pairs = [(q, d, ex) for q, docs in todo.items() for d, ex in docs]
    random.Random(cfg.seed).shuffle(pairs)  # a run stopped early holds a fair sample of every source
    chunk = max(1, cfg.batch_size) * 4  # pairs of several queries share the teacher's batches
    try:
        with out.open("a", encoding="utf-8") as fh, _rejects_path(out).open("a", encoding="utf-8") as rej, \
                tqdm(total=len(pairs), desc=f"generate ({cfg.source})", disable=not cfg.progress) as bar:
            for s in range(0, len(pairs), chunk):
                part = pairs[s:s + chunk]
                records: list[Example] = []
                rejected: list[Example] = []
                if cfg.source == "qrels":
                    records = [ex for _, _, ex in part]
                else:
                    results = teacher.score_pairs([(queries[q], ex.document) for q, _, ex in part])
                    for (_, _, gold), r in zip(part, results):
                        ex = replace(gold, label=int(r.label), explanation=(r.explanation or "").strip() or None,
                                     source="teacher", teacher_label=int(r.label))
                        if r.error or not r.parse_ok or not ex.explanation:
                            failures += 1
                            if not cfg.keep_failures or not ex.explanation:
                                rejected.append(replace(ex, explanation=ex.explanation or r.raw_output))
                                continue
                        if cfg.agree_only and gold.gold_label is not None and ex.teacher_label != gold.gold_label:
                            disagreements += 1
                            rejected.append(ex)
                            continue
                        records.append(ex)
                for ex in records:
                    fh.write(ex.to_json() + "\n")
                for ex in rejected:  # kept aside so that a resumed run does not ask the teacher again
                    rej.write(ex.to_json() + "\n")
                fh.flush()
                rej.flush()
                written += len(records)
                bar.update(len(part))
                bar.set_postfix(written=written, failures=failures, disagreements=disagreements)
                if cfg.progress:
                    logger.info("generate: %d/%d pairs, %d written, %d unparsed, %d disagreeing (%.0f pairs/hour)",
                                bar.n, len(pairs), written, failures, disagreements,
                                bar.n / max(time.time() - started, 1e-9) * 3600)
    finally:
        if own_teacher:
            teacher.close()
    if failures:
        logger.warning("%d teacher outputs had no valid verdict and were %s", failures,
                       "kept (label from probabilities)" if cfg.keep_failures else "skipped")
    stats = GenerateStats(queries=len(todo), written=written, skipped_existing=skipped, parse_failures=failures,
                          output=str(out), disagreements=disagreements, seconds=round(time.time() - started, 1))
    logger.info("generate: %s", json.dumps(stats.__dict__))
    return stats
