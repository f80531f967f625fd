"""Pure parsing of a model's judgment (explanation + label) and label-probability scoring."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Judgment", "ParseError", "parse_judgment", "label_distribution", "expected_score", "calibrate",
           "validate_labels", "verdict_regex", "find_verdicts", "Verdict", "matching_view", "NonFiniteScores"]


class ParseError(ValueError):
    """The model's output has no valid label; raised when ``on_parse_error="raise"``."""


class NonFiniteScores(ValueError):
    """A backend returned a NaN or +inf log-probability: the document cannot be scored (reported as an
    error on its result, never as a score)."""


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


# One verdict grammar for the parser and the sanitiser (reasonrank.safety): the marker word, an optional
# " label", at most 16 separator characters (spaces, markdown, ':', '=', quotes, brackets), then 1-3 digits.
# Every repetition is bounded and no two unbounded quantifiers meet, so matching is linear in the text
# (a reply of "Relevance" and a million spaces parses in milliseconds, not hours).
_SEPARATORS = r"[\s*_:=`\"'\[(]{0,16}"


def verdict_regex(marker: str = "Relevance:") -> re.Pattern[str]:
    """The verdict grammar: ``Relevance: 2``, ``**Relevance:** 1``, ``Relevance = 2``, ``relevance label: [2]``,
    ``Relevance 2``, ``the relevance label is 0`` (case-insensitive); group 1 is the label's digits.

    Example:
        >>> [m.group(1) for m in verdict_regex().finditer("Relevance: 2, **relevance** [1]; RELEVANCE = 0")]
        ['2', '1', '0']
    """
    word = re.escape(marker.strip().rstrip(":").strip())
    return re.compile(rf"{word}(?:[ \t]{{1,4}}(?:label|score))?(?:[ \t]{{1,4}}is)?{_SEPARATORS}(\d{{1,3}})(?!\d)",
                      re.IGNORECASE)


# Characters that render as nothing (zero-width space/joiners, word joiner, BOM, soft hyphen, ...) and letters
# that look like the Latin ones of a verdict (Cyrillic and Greek capitals and small letters): a document
# could hide "Relevance: 2" from a plain regex with them while the model still reads it.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e"
                                    "\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
                                    "\u2066\u2067\u2068\u2069\ufeff"), "")
_LOOKALIKES = str.maketrans("АВЕЅІЈКМНОРСТХУаеіјоосрѕхуԁӏΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεινορτυχ",
                            "ABESIJKMHOPCTXYaeijoocpsxydlABEZHIKMNOPTYXaeivoptux")


def matching_view(text: str) -> tuple[str, list[int] | None]:
    """The text verdicts are matched in: NFKC-normalised (fullwidth and styled letters and digits become
    plain ones), invisible characters removed, Cyrillic/Greek look-alike letters mapped to Latin; with, for
    each of its characters, the index of the character of ``text`` it comes from (None: the identity, for
    ASCII text). Linear in the text.

    Example:
        >>> matching_view("R\u200belevance")[0], matching_view("Ｒеlevance: ２")[0]
        ('Relevance', 'Relevance: 2')
    """
    if text.isascii():
        return text, None
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch)
            origin.append(i)
            continue
        norm = unicodedata.normalize("NFKC", ch).translate(_INVISIBLE).translate(_LOOKALIKES)
        out.append(norm)
        origin.extend([i] * len(norm))
    return "".join(out), origin


@dataclass(frozen=True)
class Verdict:
    """A verdict found by :func:`find_verdicts`, in the coordinates of the original text.

    Attributes:
        start: First character of the verdict (its marker word).
        end: One past its last character.
        label: The label written (not checked against a scale).
        label_start: Character offset of the label's first digit.
    """

    start: int
    end: int
    label: int
    label_start: int


def find_verdicts(text: str, marker: str = "Relevance:") -> list[Verdict]:
    """Every verdict of :func:`verdict_regex`'s grammar in ``text``, matched in its :func:`matching_view`
    (so ``Rel\u200bevance: 2`` or ``Rеlevance: 2`` with a Cyrillic ``е`` count); the one grammar of the parser,
    the sanitiser (:func:`reasonrank.safety.neutralize`) and the backends' stop rule.

    Example:
        >>> [(v.label, v.start, v.end) for v in find_verdicts("ok. Relevance: 2 and RELEVANCE **１**")]
        [(2, 4, 16), (1, 21, 34)]
    """
    view, origin = matching_view(text)
    found = []
    for m in verdict_regex(marker).finditer(view):
        if origin is None:
            found.append(Verdict(m.start(), m.end(), int(m.group(1)), m.start(1)))
        else:
            found.append(Verdict(origin[m.start()], origin[m.end() - 1] + 1, int(m.group(1)), origin[m.start(1)]))
    return found


_EXPLANATION_HEAD = re.compile(r"^[\s*_#]{0,16}(?:explanation|reasoning|rationale)[\s*_:]{0,16}", re.I)


_DANGLING = re.compile(r"(?<=[.!?])\s+[^.!?\n]{0,40}$")


def _tidy(explanation: str) -> str:
    """Strip markdown and a dangling lead-in left before an inline verdict ("... Therefore, the")."""
    text = explanation.strip().rstrip("*_#").strip()
    return _DANGLING.sub("", text) if text and text[-1] not in ".!?" else text


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
        >>> parse_judgment("It covers inflation only. Therefore, the relevance label is 0.").explanation
        'It covers inflation only.'

    """
    if not isinstance(text, str):
        return Judgment(False, None, "", None, f"output is {type(text).__name__}, not text")
    verdicts = find_verdicts(text, marker)
    if not verdicts:
        expl = _EXPLANATION_HEAD.sub("", text, count=1).strip()
        return Judgment(False, None, expl, None, f"no '{marker.strip()} <label>' verdict found in the output")
    v = verdicts[-1]
    explanation = _tidy(_EXPLANATION_HEAD.sub("", text[: v.start], count=1))
    if v.label not in labels:
        return Judgment(False, None, explanation, v.label_start, f"label {v.label} is not on the scale {tuple(labels)}")
    return Judgment(True, v.label, explanation, v.label_start, None)


def label_distribution(logprobs: Mapping[int, float], labels: Sequence[int]) -> tuple[float, ...]:
    """Softmax of per-label log-probabilities restricted to the scale (missing labels get 0).

    Raises:
        NonFiniteScores: a NaN or +inf log-probability (the reranker reports it as the document's error).

    Example:
        >>> [round(p, 3) for p in label_distribution({0: math.log(0.1), 2: math.log(0.3)}, (0, 1, 2))]
        [0.25, 0.0, 0.75]
        >>> label_distribution({0: -0.1, 2: float("nan")}, (0, 1, 2))
        Traceback (most recent call last):
        ...
        reasonrank.parsing.NonFiniteScores: the backend returned a non-finite log-probability for label(s) [2]: {2: nan}
    """
    vals = [float(logprobs.get(lab, -math.inf)) for lab in labels]
    bad = [lab for lab, v in zip(labels, vals) if math.isnan(v) or v == math.inf]
    if bad:
        raise NonFiniteScores(f"the backend returned a non-finite log-probability for label(s) {bad}: "
                              f"{ {lab: logprobs.get(lab) for lab in bad} }")
    top = max(vals)
    if top == -math.inf:
        raise ValueError("no label of the scale has a finite log-probability; the backend returned none of "
                         f"the label tokens {tuple(labels)}")
    exps = [math.exp(v - top) if v != -math.inf else 0.0 for v in vals]
    total = sum(exps)
    return tuple(e / total for e in exps)


def calibrate(probs: Sequence[float], prior: Sequence[float], weight: float) -> tuple[float, ...]:
    """Label probabilities with a document prior divided out: ``p(l) / prior(l) ** weight``, renormalised.
    ``prior`` is the model's distribution for the same document under a content-free query, so what the model
    thinks of the document whatever is asked is discounted (pointwise mutual information at ``weight=1``;
    "calibrate before use", Zhao et al., 2021). With two labels this is ``logit(p) - weight * logit(prior)``.

    Example:
        >>> [round(p, 3) for p in calibrate((0.2, 0.8), (0.2, 0.8), 1.0)]   # the prior alone: no evidence left
        [0.5, 0.5]
        >>> [round(p, 3) for p in calibrate((0.2, 0.8), (0.5, 0.5), 0.7)]   # a neutral prior changes nothing
        [0.2, 0.8]
    """
    logs = [math.log(max(p, 1e-12)) - weight * math.log(max(q, 1e-12)) for p, q in zip(probs, prior)]
    top = max(logs)
    exps = [math.exp(v - top) for v in logs]
    total = sum(exps)
    return tuple(e / total for e in exps)


def expected_score(probs: Sequence[float], labels: Sequence[int]) -> float:
    """Expected label divided by the top label, in [0, 1].

    Example:
        >>> expected_score((0.25, 0.0, 0.75), (0, 1, 2))
        0.75
    """
    return float(sum(p * lab for p, lab in zip(probs, labels)) / labels[-1])
