"""First-stage retrieval over a :class:`~reasonrank.evaluation.Collection`: BM25 (``bm25s``, ``bench`` extra)
and exact dense search (``sentence-transformers``, ``dense`` extra), each imported lazily."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .._deps import require
from .collections import Collection, Run

__all__ = ["bm25_search", "dense_search"]

logger = logging.getLogger(__name__)


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
