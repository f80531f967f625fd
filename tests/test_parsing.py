"""Pure unit tests: parser, label distribution and scoring, label-scale validation."""

from __future__ import annotations

import math

import pytest

from reasonrank.parsing import expected_score, label_distribution, parse_judgment, validate_labels


@pytest.mark.parametrize("text,label", [
    ("Explanation: It answers the question.\nRelevance: 2", 2),
    ("Explanation: Partly.\nRelevance: 1", 1),
    ("relevance: 0", 0),
    ("**Relevance:** 2", 2),
    ("Explanation: x\nRelevance = 1", 1),
    ("Explanation: x\nRelevance: [2]", 2),
    ("Explanation: x\nRelevance: **1**", 1),
    ("Explanation: x\nRELEVANCE:2", 2),
    ("Explanation: x\nRelevance label: 1", 1),
    ("Explanation: x\nRelevance: 2/2", 2),
])
def test_parses_verdict_variants(text: str, label: int) -> None:
    j = parse_judgment(text)
    assert j.ok and j.label == label and j.error is None
    assert text[j.label_start] == str(label)


def test_last_verdict_wins_over_restated_scale() -> None:
    text = ("Explanation: The label scale is Relevance: 0 for unrelated documents. This one matches.\n"
            "Relevance: 2")
    j = parse_judgment(text)
    assert j.label == 2
    assert j.label_start == len(text) - 1
    assert "scale is Relevance: 0" in j.explanation


def test_explanation_is_tidied() -> None:
    j = parse_judgment("Explanation:   The doc defines BM25.  \n\nRelevance: 2")
    assert j.explanation == "The doc defines BM25."
    assert parse_judgment("**Explanation:** short.\n**Relevance:** 1").explanation == "short."


@pytest.mark.parametrize("text,needle", [
    ("I think it is relevant.", "no 'Relevance: <label>' verdict"),
    ("", "no 'Relevance: <label>' verdict"),
    ("Explanation: x\nRelevance: 3", "label 3 is not on the scale"),
    ("Explanation: x\nRelevance: 12", "label 12 is not on the scale"),
    ("Relevance: high", "no 'Relevance: <label>' verdict"),
])
def test_malformed_outputs_fail_with_reason(text: str, needle: str) -> None:
    j = parse_judgment(text)
    assert not j.ok and j.label is None
    assert needle in j.error


def test_non_text_output() -> None:
    j = parse_judgment(None)  # type: ignore[arg-type]
    assert not j.ok and "NoneType" in j.error


def test_custom_marker_and_scale() -> None:
    j = parse_judgment("Reasoning: fine\nScore: 4", labels=range(5), marker="Score:")
    assert (j.ok, j.label, j.explanation) == (True, 4, "fine")
    assert not parse_judgment("Reasoning: fine\nRelevance: 1", labels=range(5), marker="Score:").ok


def test_label_distribution_is_softmax_over_scale() -> None:
    lp = {0: -2.0, 1: -1.0, 2: -0.5, 7: 5.0}  # 7 is off the scale and must be ignored
    probs = label_distribution(lp, (0, 1, 2))
    z = sum(math.exp(v) for v in (-2.0, -1.0, -0.5))
    assert probs == pytest.approx([math.exp(-2.0) / z, math.exp(-1.0) / z, math.exp(-0.5) / z])
    assert sum(probs) == pytest.approx(1.0)


def test_label_distribution_missing_labels_and_all_missing() -> None:
    assert label_distribution({1: -3.0}, (0, 1)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="no label of the scale"):
        label_distribution({5: -1.0}, (0, 1, 2))


def test_expected_score_bounds_and_value() -> None:
    assert expected_score((1.0, 0.0, 0.0), (0, 1, 2)) == 0.0
    assert expected_score((0.0, 0.0, 1.0), (0, 1, 2)) == 1.0
    probs = (0.2, 0.3, 0.5)
    assert expected_score(probs, (0, 1, 2)) == pytest.approx((0.3 * 1 + 0.5 * 2) / 2)


@pytest.mark.parametrize("bad", [(1, 2), (0,), (0, 2, 1), (0, 10), (0, 0, 1), ()])
def test_validate_labels_rejects(bad: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="label scale must be"):
        validate_labels(bad)


def test_validate_labels_accepts_gapped_scale() -> None:
    assert validate_labels([0, 1, 3]) == (0, 1, 3)
