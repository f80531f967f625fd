"""``prior_weight``: direct-mode label distributions calibrated by each document's prior (its distribution under
a content-free query), on the real tiny model and on a scripted backend that counts the prompts it is sent."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends import LabelSpec, Prompt
from reasonrank.parsing import calibrate
from reasonrank.planning import PRIOR_QUERY
from reasonrank.testing import ScriptedBackend

QUERY = "what is bm25 ranking"
DOCS = ["BM25 is a ranking function used by search engines.", "The cat sat on the mat.",
        {"id": "d3", "title": "Vaccines", "text": "Vaccines train the immune system."}]


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> ReasoningReranker:
    return ReasoningReranker(str(tiny_model_dir), mode="direct", label_scale=(0, 1), dtype="float32", batch_size=2)


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_scores_are_the_label_distribution_divided_by_the_document_prior(plain, weight) -> None:
    raw = plain.score(QUERY, DOCS)
    prior = plain.score(PRIOR_QUERY, DOCS)
    rr = ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1), prior_weight=weight)
    got = rr.score(QUERY, DOCS)
    for g, r, p in zip(got, raw, prior):
        want = calibrate(r.label_probs, p.label_probs, weight)
        assert g.label_probs == pytest.approx(want, abs=1e-5)
        assert g.score == pytest.approx(want[1], abs=1e-5) and g.model_score == g.score
        assert g.label == (1 if want[1] > want[0] else 0) and g.error is None
        logit = math.log(r.score / (1 - r.score)) - weight * math.log(p.score / (1 - p.score))
        assert g.score == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)  # binary: a shifted logit
    assert [r.score for r in ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1),
                                               prior_weight=0).score(QUERY, DOCS)] == [r.score for r in raw]


def test_a_query_blind_model_is_left_with_no_evidence_and_priors_are_computed_once_per_document() -> None:
    be = ScriptedBackend(label_logprobs={0: math.log(0.3), 1: math.log(0.7)})
    rr = ReasoningReranker(backend=be, mode="direct", label_scale=(0, 1), prior_weight=1.0)
    docs = ["alpha document", "beta document", "alpha document"]
    first = rr.score("q one", docs)
    assert [r.score for r in first] == pytest.approx([0.5] * 3)  # the same whatever is asked: no evidence
    assert len(be.label_prompts) == 3 + 2  # one prior per distinct document, in the same request
    assert sum(PRIOR_QUERY in str(p.messages) for p in be.label_prompts) == 2
    rr.score("q two", docs[:2] + ["gamma document"])
    assert len(be.label_prompts) == 5 + 3 + 1  # cached priors are not asked again; the new document's is
    assert len(ReasoningReranker(backend=be, mode="direct", label_scale=(0, 1)).score("q", docs)) == 3
    assert len(be.label_prompts) == 9 + 3  # off by default: no prior prompts


class _NanPrior(ScriptedBackend):
    """Finite label log-probabilities, except for the content-free prompt of one document."""

    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        out = super().label_logprobs(prompts, spec)
        return [{0: math.nan, 1: 0.0} if PRIOR_QUERY in str(p.messages) and "broken" in str(p.messages) else o
                for p, o in zip(prompts, out)]


def test_a_document_whose_prior_fails_is_reported_not_scored_uncalibrated() -> None:
    rr = ReasoningReranker(backend=_NanPrior(label_logprobs={0: -1.0, 1: -0.5}), mode="direct",
                           label_scale=(0, 1), prior_weight=0.5)
    ok, bad = rr.rank("q", ["a fine document", "a broken document"])
    assert ok.error is None and bad.error is not None and bad.error.startswith("document prior:")
    assert bad.score == 0.0 and bad.rank == 2


def test_bad_prior_weights_name_the_fix(tiny_model_dir: Path) -> None:
    be = ScriptedBackend()  # the checks prior_weight shares with likelihood_weight: tests/test_likelihood.py
    be.model_meta = {"prior_weight": 3}  # a card's bad default names the card
    with pytest.raises(ValueError, match=r"reasonrank.json: prior_weight .* fix or delete it"):
        ReasoningReranker(backend=be, mode="direct")
    be.model_meta = {"prior_weight": 0.5}  # a card's default applies in direct mode only
    assert ReasoningReranker(backend=be, mode="direct").prior_weight == 0.5
    assert ReasoningReranker(backend=be, mode="reasoning").prior_weight is None


def test_serve_calibrates_and_fuses_as_the_library_does(plain: ReasoningReranker, tiny_model_dir: Path,
                                                        served_like_library) -> None:
    from reasonrank.cli import main

    docs = [{"id": f"d{i}", "text": t, "score": s} for i, (t, s) in
            enumerate(zip(["BM25 is a ranking function.", "Cats sleep a lot.", "Lucene uses BM25 by default."],
                          [3.0, 9.0, 5.0]))]
    want = served_like_library(ReasoningReranker(backend=plain.backend, mode="direct", label_scale=(0, 1),
                                                 prior_weight=0.5, fusion_weight=0.3), QUERY, docs)
    uncalibrated = {r.index: r.score for r in plain.score(QUERY, docs)}
    assert any(abs(w.model_score - uncalibrated[w.index]) > 1e-4 for w in want)  # the prior did change them
    # the command line hands both weights to the reranker: a prior in reasoning mode is refused, naming the fix
    assert main(["serve", "--model", str(tiny_model_dir), "--mode", "reasoning", "--prior-weight", "0.5"]) == 2
    assert main(["serve", "--model", str(tiny_model_dir), "--mode", "direct", "--fusion-weight", "2"]) == 2
