"""Score fusion of reranker and first-stage scores (pure functions, and through the reranker)."""

from __future__ import annotations

import math

import pytest

from reasonrank import ReasoningReranker
from reasonrank.fusion import fuse_scores, minmax, tune_fusion_weight
from reasonrank.schema import Document

DOCS = ["Tides are caused by the Moon's gravity pulling on the oceans.", "Pasta is boiled in salted water.",
        "The ocean covers most of the Earth.", "Espresso is brewed under pressure."]


def test_minmax_and_fuse():
    assert minmax([1.0, 3.0]) == [0.0, 1.0]
    assert fuse_scores([0.2, 0.8], [5.0, 1.0], 1.0) == [1.0, 0.0]
    with pytest.raises(ValueError, match="finite"):
        minmax([1.0, math.nan])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fuse_scores([0.1], [1.0], 1.5)


def test_tune_picks_the_weight_that_ranks_the_relevant_document_first():
    qrels = {"q": {"good": 1}}
    first = {"q": {"good": 10.0, "bad": 1.0}}   # the first stage is right
    model = {"q": {"good": 0.2, "bad": 0.9}}    # the model is wrong
    best, table = tune_fusion_weight(qrels, first, model, grid=(0.0, 0.5, 1.0))
    assert table[0.0] < table[1.0] == 1.0 and best in (0.5, 1.0)


def test_reranker_fusion_keeps_both_scores(tiny_model_dir):
    first = [4.0, 3.0, 2.0, 1.0]
    docs = [Document(text=t, id=str(i), first_stage_score=s) for i, (t, s) in enumerate(zip(DOCS, first))]
    plain = ReasoningReranker(str(tiny_model_dir), mode="direct", device="cpu")
    only_first = ReasoningReranker(backend=plain.backend, mode="direct", fusion_weight=1.0)
    half = ReasoningReranker(backend=plain.backend, mode="direct", fusion_weight=0.5)
    base = plain.score("what causes tides", docs)
    assert [r.score for r in base] == [r.model_score for r in base]
    ranked = only_first.rank("what causes tides", docs)
    assert [r.id for r in ranked] == ["0", "1", "2", "3"]  # weight 1: the first stage's order
    mixed = half.score("what causes tides", [{"text": t, "score": s} for t, s in zip(DOCS, first)])
    for r, b, f in zip(mixed, base, minmax(first)):
        assert r.model_score == pytest.approx(b.score, abs=1e-6) and r.first_stage_score is not None
        assert r.score == pytest.approx(0.5 * b.score + 0.5 * f, abs=1e-6)


def test_fusion_without_first_stage_scores_names_the_fix(tiny_direct):
    rr = ReasoningReranker(backend=tiny_direct.backend, mode="direct", fusion_weight=0.3)
    with pytest.raises(ValueError, match=r"docs\[1\] has no first-stage score"):
        rr.score("q", [{"text": "a", "score": 1.0}, "b"])
    with pytest.raises(ValueError, match="fusion_weight must be a number"):
        ReasoningReranker(backend=tiny_direct.backend, mode="direct", fusion_weight=2)
    with pytest.raises(TypeError, match="first-stage score must be a number"):
        rr.score("q", [{"text": "a", "score": "high"}])


def test_model_card_fusion_weight_is_a_default_that_needs_scores(tiny_model_dir, tmp_path):
    """reasonrank.json's fusion_weight fuses documents that all carry first-stage scores; documents without
    any are ranked by the model alone; a mix is an error; an explicit 0 turns the default off."""
    import json
    import shutil

    model = tmp_path / "fused"
    shutil.copytree(tiny_model_dir, model)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "fusion_weight": 1.0}))
    first = [1.0, 2.0, 3.0, 4.0]
    scored = [{"id": str(i), "text": t, "score": s} for i, (t, s) in enumerate(zip(DOCS, first))]
    with ReasoningReranker(str(model), device="cpu") as rr:
        assert rr.fusion_weight == 1.0
        assert [r.id for r in rr.rank("what causes tides", scored)] == ["3", "2", "1", "0"]
        plain = rr.score("what causes tides", DOCS)
        assert all(r.score == r.model_score and r.first_stage_score is None for r in plain)
        with pytest.raises(ValueError, match=r"docs\[1\] has no first-stage score"):
            rr.score("q", [scored[0], "b"])
        off = ReasoningReranker(backend=rr.backend, mode="direct", fusion_weight=0)
        assert [r.score for r in off.score("what causes tides", scored)] == \
            pytest.approx([r.score for r in plain], abs=1e-6)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "fusion_weight": 3}))
    with pytest.raises(ValueError, match="fusion_weight must be a number in"):
        ReasoningReranker(str(model), device="cpu")
