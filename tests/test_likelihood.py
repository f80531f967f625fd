"""``likelihood_weight``: the query likelihood (log P(query | document), UPR) mixed into direct-mode scores, on
the real tiny model (the backend's pass against a plain forward; the reranker against the benchmark's
arithmetic; serve against the library) and on scripted backends for the failure paths."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.fusion import fuse_scores, list_scores
from reasonrank.schema import to_documents
from reasonrank.templates import LIKELIHOOD_PROMPT, PromptTemplate, TemplateError
from reasonrank.testing import ScriptedBackend

QUERY = "how does BM25 score documents"
DOCS = ["BM25 scores a document by the frequency of each query term in it, saturated, times the term's inverse "
        "document frequency, normalised by document length.",
        "Boil the pasta in salted water for nine minutes, then toss it with the sauce.",
        {"id": "d3", "title": "Vaccines", "text": "Vaccines train the immune system to recognise a pathogen."}]


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> ReasoningReranker:
    return ReasoningReranker(str(tiny_model_dir), mode="direct", label_scale=(0, 1), dtype="float32", batch_size=2)


def _reference(rr: ReasoningReranker, context: str, continuation: str) -> float:
    """Mean log-probability of the continuation's tokens, from one unbatched forward pass over the whole text."""
    import torch

    tok, model = rr.backend.tokenizer, rr.backend.model
    head = tok(context, add_special_tokens=False)["input_ids"]
    tail = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([head + tail])).logits[0].float()
    lp = torch.log_softmax(logits[len(head) - 1:-1], dim=-1)
    return float(lp.gather(-1, torch.tensor(tail)[:, None]).mean())


def test_the_backend_scores_each_continuation_as_one_unbatched_pass_does(plain: ReasoningReranker) -> None:
    pairs = [(LIKELIHOOD_PROMPT.format(document=d if isinstance(d, str) else d["text"]), " " + q)
             for d, q in zip(DOCS, [QUERY, "pasta cooking time", "what do vaccines do to the immune system"])]
    got = plain.backend.continuation_logprobs(pairs)  # batch_size 2: rows of different lengths, left-padded
    want = [_reference(plain, c, q) for c, q in pairs]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(v < 0 for v in got) and len(set(got)) == 3


def test_scores_mix_the_query_likelihood_as_the_benchmark_does(plain: ReasoningReranker) -> None:
    raw = plain.score(QUERY, DOCS)
    rr = ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1), likelihood_weight=0.5)
    got = rr.score(QUERY, DOCS)
    qlps = [g.query_logprob for g in got]
    assert all(isinstance(v, float) and math.isfinite(v) for v in qlps)
    texts = [t for t, _ in rr.prompts.document_texts(to_documents(DOCS), rr.backend)]
    pairs = rr._planner().likelihood_pairs([QUERY] * 3, texts)
    assert qlps == pytest.approx(plain.backend.continuation_logprobs(pairs), abs=1e-6)
    model, _ = list_scores([r.score for r in raw], qlps, None, likelihood_weight=0.5)
    assert [g.score for g in got] == pytest.approx(model, abs=1e-6)
    assert [g.model_score for g in got] == pytest.approx(model, abs=1e-6)
    assert [g.label_probs for g in got] == [r.label_probs for r in raw]  # labels stay the label pass's
    assert all(r.query_logprob is None for r in raw)  # off by default: no second pass
    # the answering document is the likeliest to have been asked about, on an untrained model too
    assert max(range(3), key=lambda i: qlps[i]) == 0
    from benchmarks.engine import with_likelihood  # the engine benchmark's rows are this arithmetic

    rows = with_likelihood({"q": {str(i): {"score": r.score} for i, r in enumerate(raw)}},
                           {"q": {str(i): v for i, v in enumerate(qlps)}}, 0.5)
    assert [rows["q"][str(i)]["score"] for i in range(3)] == pytest.approx(model, abs=1e-9)


def test_pairs_report_the_likelihood_without_mixing_it_and_fusion_comes_after(plain: ReasoningReranker) -> None:
    rr = ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1), likelihood_weight=0.7)
    pairs = rr.score_pairs([(QUERY, DOCS[0]), ("pasta cooking time", DOCS[1])])
    raw = plain.score_pairs([(QUERY, DOCS[0]), ("pasta cooking time", DOCS[1])])
    assert [p.score for p in pairs] == pytest.approx([r.score for r in raw], abs=1e-6)  # one query each: no list
    assert all(p.query_logprob is not None for p in pairs)
    docs = [{"text": d if isinstance(d, str) else d["text"], "score": s} for d, s in zip(DOCS, [1.0, 7.0, 3.0])]
    fused = ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1), likelihood_weight=0.7,
                              fusion_weight=0.4).score(QUERY, docs)
    alone = rr.score(QUERY, docs)  # the likelihood mixed in, nothing fused
    assert [f.score for f in fused] == pytest.approx(
        fuse_scores([a.model_score for a in alone], [1.0, 7.0, 3.0], 0.4), abs=1e-6)
    assert [f.model_score for f in fused] == pytest.approx([a.model_score for a in alone], abs=1e-6)


class _NanLikelihood(ScriptedBackend):
    """Label log-probabilities as scripted; a NaN query likelihood for documents that say "broken"."""

    def continuation_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [math.nan if "broken" in c else -float(len(c)) / 100 for c, _ in pairs]


def test_a_document_whose_likelihood_fails_is_reported_and_the_rest_still_mix() -> None:
    rr = ReasoningReranker(backend=_NanLikelihood(label_logprobs={0: -1.0, 1: -0.5}), mode="direct",
                           label_scale=(0, 1), likelihood_weight=0.5)
    results = rr.rank("q", ["a short document", "a broken document", "a much longer fine document here"])
    bad = next(r for r in results if r.index == 1)
    assert bad.error is not None and bad.error.startswith("query likelihood:") and bad.score == 0.0 and bad.rank == 3
    good = sorted((r for r in results if r.index != 1), key=lambda r: r.index)
    assert [r.score for r in good] == pytest.approx([0.5 * good[0].label_probs[1] + 0.5,
                                                     0.5 * good[1].label_probs[1] + 0.0])


@pytest.mark.parametrize("name", ["likelihood_weight", "prior_weight"])
def test_direct_mode_weights_are_checked_naming_the_fix(name: str) -> None:
    be = ScriptedBackend()
    with pytest.raises(ValueError, match=rf"pass mode='direct' or drop {name}"):
        ReasoningReranker(backend=be, mode="reasoning", **{name: 0.5})
    for bad in (1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=rf"{name} must be a number in \[0, 1\] or None"):
            ReasoningReranker(backend=be, mode="direct", **{name: bad})


def test_bad_likelihood_settings_name_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    be = ScriptedBackend()
    with pytest.raises(NotImplementedError, match=r"use the transformers backend, or pass likelihood_weight=0"):
        ReasoningReranker(backend=be, mode="direct", likelihood_weight=0.5).score("q", ["a document"])
    able = _NanLikelihood()
    able.model_meta = {"likelihood_weight": 0.4}  # a card's default applies in direct mode only; 0 turns it off
    assert ReasoningReranker(backend=able, mode="direct").likelihood_weight == 0.4
    assert ReasoningReranker(backend=able, mode="reasoning").likelihood_weight is None
    assert [r.query_logprob for r in ReasoningReranker(backend=able, mode="direct", likelihood_weight=0).score(
        "q", ["a document"])] == [None]
    be.model_meta = able.model_meta  # a backend that cannot compute it: the card's default is left out, and said
    with caplog.at_level(logging.WARNING, logger="reasonrank.reranker"):
        assert ReasoningReranker(backend=be, mode="direct").likelihood_weight is None
    assert "likelihood_weight is not applied: the scripted backend does not compute" in caplog.text
    with pytest.raises(TemplateError, match=r"likelihood must contain \{document\} once"):
        PromptTemplate(name="t", mode="direct", system="", user="{query} {document}", assistant_prefix="Relevance:",
                       likelihood="Passage: {document} {query}")


def test_serve_mixes_the_likelihood_as_the_library_does(plain: ReasoningReranker, tiny_model_dir: Path,
                                                        served_like_library) -> None:
    from reasonrank.cli import main

    docs = [{"id": f"d{i}", "text": d if isinstance(d, str) else d["text"], "score": s}
            for i, (d, s) in enumerate(zip(DOCS, [3.0, 9.0, 5.0]))]
    want = served_like_library(ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1),
                                                 likelihood_weight=0.6, fusion_weight=0.3), QUERY, docs)
    assert all(w.query_logprob is not None for w in want)
    assert main(["serve", "--model", str(tiny_model_dir), "--mode", "reasoning", "--likelihood-weight", "0.5"]) == 2
