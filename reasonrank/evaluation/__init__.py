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

Modules: :mod:`~reasonrank.evaluation.collections` (:class:`Collection` and its loaders),
:mod:`~reasonrank.evaluation.retrieval` (first stage), :mod:`~reasonrank.evaluation.rerank` (:func:`rerank_run`),
:mod:`~reasonrank.evaluation.measures` (:func:`evaluate`) and :mod:`~reasonrank.evaluation.trec` (TREC I/O);
every public name is re-exported here.
"""

from __future__ import annotations

from .collections import Collection, Qrels, Run, load_beir, load_beir_unjudged, load_bright
from .measures import DEFAULT_MEASURES, evaluate
from .rerank import rerank_run
from .retrieval import bm25_search, dense_search
from .trec import read_trec_run, write_qrels, write_trec_run

__all__ = ["Collection", "Run", "Qrels", "DEFAULT_MEASURES", "load_beir", "load_beir_unjudged", "load_bright",
           "bm25_search", "dense_search", "rerank_run", "evaluate", "write_trec_run", "read_trec_run", "write_qrels"]
