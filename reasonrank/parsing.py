"""Pure parsing of a model's judgment (explanation + label) and label-probability scoring."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Judgment", "ParseError", "parse_judgment", "label_distribution", "expected_score",
           "validate_labels"]


class ParseError(ValueError):
    """The model's output has no valid label; raised when ``on_parse_error="raise"``."""


@dataclass(frozen=True)
class Judgment:
    """What :func:`parse_judgment` read from an output.

    Attributes:
        ok: True when a valid label was found.
        label: The label, or None.
        explanation: The text before the verdict, tidied (empty if none).
        label_start: Character offset of the label digits in the parsed text, or None.
        error: Why parsing failed, or None.
    """

    ok: bool
    label: int | None
    explanation: str
    label_start: int | None = None
    error: str | None = None


def validate_labels(labels: Sequence[int]) -> tuple[int, ...]:
    """Check a label scale: at least two distinct ascending single-digit integers starting at 0.

    Example:
        >>> validate_labels(range(3))
        (0, 1, 2)
        >>> validate_labels([0, 0])
        Traceback (most recent call last):
        ...
        ValueError: label scale must be ascending distinct integers 0..9 starting at 0 (e.g. (0, 1, 2)); got (0, 0)
    """
    scale = tuple(int(x) for x in labels)
    ok = (len(scale) >= 2 and scale[0] == 0 and all(0 <= x <= 9 for x in scale)
          and all(a < b for a, b in zip(scale, scale[1:])))
    if not ok:
        raise ValueError("label scale must be ascending distinct integers 0..9 starting at 0 (e.g. (0, 1, 2)); "
                         f"got {scale}")
    return scale


def _marker_regex(marker: str) -> re.Pattern[str]:
    word = re.escape(marker.strip().rstrip(":").strip())
    # "Relevance: 2", "**Relevance:** 2", "Relevance = 2", "relevance label: [2]", "Relevance: 2/2"
    return re.compile(rf"{word}(?:\s+label)?\s*[*_]*\s*[:=]?\s*[*_`\"'\[(]*\s*(\d+)(?!\d)", re.IGNORECASE)


_EXPLANATION_HEAD = re.compile(r"^\s*[*_#]*\s*(?:explanation|reasoning|rationale)\s*[*_]*\s*:?\s*[*_]*\s*", re.I)


def parse_judgment(text: str, labels: Sequence[int] = (0, 1, 2), marker: str = "Relevance:") -> Judgment:
    """Parse ``Explanation: ... Relevance: <label>`` output.

    The *last* verdict in the text counts (models restate the scale before answering). A number
    outside the scale is a failure, never clipped.

    Args:
        text: The model output (with the assistant prefix, if one was used).
        labels: The label scale.
        marker: The verdict marker, matched case-insensitively, with or without colon/markdown.

    Example:
        >>> j = parse_judgment("Explanation: It defines the term.\\nRelevance: 2")
        >>> (j.ok, j.label, j.explanation)
        (True, 2, 'It defines the term.')
        >>> parse_judgment("**Relevance:** 1").label
        1
        >>> parse_judgment("Relevance: 7").error
        'label 7 is not on the scale (0, 1, 2)'
        >>> parse_judgment("I think it is relevant.").ok
        False
    """
    if not isinstance(text, str):
        return Judgment(False, None, "", None, f"output is {type(text).__name__}, not text")
    matches = list(_marker_regex(marker).finditer(text))
    if not matches:
        expl = _EXPLANATION_HEAD.sub("", text).strip()
        return Judgment(False, None, expl, None, f"no '{marker.strip()} <label>' verdict found in the output")
    m = matches[-1]
    label = int(m.group(1))
    explanation = _EXPLANATION_HEAD.sub("", text[: m.start()]).strip().rstrip("*_#").strip()
    if label not in labels:
        return Judgment(False, None, explanation, m.start(1), f"label {label} is not on the scale {tuple(labels)}")
    return Judgment(True, label, explanation, m.start(1), None)


def label_distribution(logprobs: Mapping[int, float], labels: Sequence[int]) -> tuple[float, ...]:
    """Softmax of per-label log-probabilities restricted to the scale (missing labels get 0).

    Example:
        >>> [round(p, 3) for p in label_distribution({0: math.log(0.1), 2: math.log(0.3)}, (0, 1, 2))]
        [0.25, 0.0, 0.75]
    """
    vals = [logprobs.get(lab, -math.inf) for lab in labels]
    top = max(vals)
    if top == -math.inf or math.isnan(top):
        raise ValueError("no label of the scale has a finite log-probability; the backend returned none of "
                         f"the label tokens {tuple(labels)}")
    exps = [math.exp(v - top) if v != -math.inf else 0.0 for v in vals]
    total = sum(exps)
    return tuple(e / total for e in exps)


def expected_score(probs: Sequence[float], labels: Sequence[int]) -> float:
    """Expected label divided by the top label, in [0, 1].

    Example:
        >>> expected_score((0.25, 0.0, 0.75), (0, 1, 2))
        0.75
    """
    return float(sum(p * lab for p, lab in zip(probs, labels)) / labels[-1])
