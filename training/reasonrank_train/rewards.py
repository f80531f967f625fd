"""Pure reward functions for GRPO (TRL signature: ``(prompts, completions, completion_ids, **columns)``).

* :func:`label_reward` - correctness of the verdict against the teacher/gold ``label`` column, graded with
  partial credit: ``1 - |predicted - gold| / (top label)``; no valid verdict scores 0.
* :func:`format_reward` - the output follows the format the reranker parses (reasoning: an explanation, then
  exactly one ``Relevance: <label>`` at the end; direct: the label alone).
* :func:`length_penalty` - optional, ``0`` up to a token budget, then linearly down to ``-1`` at twice it.

Completions are what the model wrote *after* the assistant prefix (``"Explanation:"`` or ``"Relevance:"``);
the parser is the core's :func:`reasonrank.parsing.parse_judgment`, so rewards judge exactly what inference
reads. Default weights (``GRPORunConfig``): label 1.0, format 0.2, length 0.0 (off).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from reasonrank.parsing import parse_judgment
from reasonrank.templates import get_template

__all__ = ["format_reward", "label_reward", "length_penalty", "make_reward_funcs"]

RewardFunc = Callable[..., list[float | None]]


def _text(completion: Any) -> str:
    """A completion as text (plain string, or TRL's conversational ``[{"role", "content"}]``)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def label_reward(completions: Sequence[Any], label: Sequence[int], *, labels: Sequence[int] = (0, 1, 2),
                 prefix: str = "Explanation:", marker: str = "Relevance:", **_: Any) -> list[float]:
    """Graded correctness of each completion's verdict against ``label`` (partial credit).

    Example:
        >>> label_reward([" It defines BM25.\\nRelevance: 2", " Off topic.\\nRelevance: 1", " no verdict"],
        ...              label=[2, 0, 1])
        [1.0, 0.5, 0.0]
        >>> label_reward([" 1", " 0"], label=[1, 1], labels=(0, 1), prefix="Relevance:")
        [1.0, 0.0]
    """
    if len(label) != len(completions):
        raise ValueError(f"label column has {len(label)} values for {len(completions)} completions")
    span = labels[-1] - labels[0]
    out = []
    for comp, gold in zip(completions, label):
        j = parse_judgment(prefix + _text(comp), labels, marker)
        out.append(0.0 if not j.ok or j.label is None else 1.0 - abs(j.label - int(gold)) / span)
    return out


def format_reward(completions: Sequence[Any], *, mode: str = "reasoning", labels: Sequence[int] = (0, 1, 2),
                  prefix: str = "Explanation:", marker: str = "Relevance:", min_explanation_words: int = 3,
                  **_: Any) -> list[float]:
    """1.0 for the exact format, 0.5 for a parseable but untidy output, 0.0 for no valid verdict.

    Reasoning mode: exact = an explanation of at least ``min_explanation_words`` words, then a single
    verdict, with nothing but whitespace after it. Direct mode: exact = the label alone.

    Example:
        >>> format_reward([" The document defines the term.\\nRelevance: 2",
        ...                " Relevance: 2",
        ...                " Good.\\nRelevance: 1\\nRelevance: 2 because ...",
        ...                " maybe relevant"])
        [1.0, 0.5, 0.5, 0.0]
        >>> format_reward([" 1", " 1 yes", " x"], mode="direct", labels=(0, 1), prefix="Relevance:")
        [1.0, 0.5, 0.0]
    """
    out = []
    for comp in completions:
        text = _text(comp)
        full = prefix + text
        j = parse_judgment(full, labels, marker)
        if not j.ok or j.label_start is None:
            out.append(0.0)
            continue
        if mode == "direct":
            out.append(1.0 if text.strip() in {str(x) for x in labels} else 0.5)
            continue
        n_verdicts = len(re.findall(re.escape(marker.strip().rstrip(":")), full, re.IGNORECASE))
        tail = full[j.label_start + len(str(j.label)):].strip()
        words = len(j.explanation.split())
        exact = words >= min_explanation_words and n_verdicts == 1 and not tail
        out.append(1.0 if exact else 0.5)
    return out


def length_penalty(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None, *,
                   target_tokens: int = 128, **_: Any) -> list[float]:
    """0 up to ``target_tokens`` generated tokens, then linearly down to -1 at twice the target.

    Uses ``completion_ids`` when given (token counts), else whitespace words.

    Example:
        >>> length_penalty(["a"] * 3, completion_ids=[[1] * 10, [1] * 15, [1] * 40], target_tokens=10)
        [0.0, -0.5, -1.0]
    """
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be >= 1, got {target_tokens}")
    counts = [len(ids) for ids in completion_ids] if completion_ids is not None else \
        [len(_text(c).split()) for c in completions]
    return [0.0 - min(1.0, max(0.0, (n - target_tokens) / target_tokens)) for n in counts]


def make_reward_funcs(*, mode: str, labels: Sequence[int], length_target: int | None = None,
                      min_explanation_words: int = 3) -> list[RewardFunc]:
    """The reward functions of a run, bound to its template's prefix/marker and label scale, in the order
    ``[label, format]`` plus ``length`` when ``length_target`` is set (names match the TRL logs).

    Example:
        >>> [f.__name__ for f in make_reward_funcs(mode="direct", labels=(0, 1), length_target=8)]
        ['label_reward', 'format_reward', 'length_penalty']
        >>> make_reward_funcs(mode="direct", labels=(0, 1))[0](completions=[" 1"], label=[1])
        [1.0]
    """
    tpl = get_template(None, mode)  # type: ignore[arg-type]
    common = {"labels": tuple(labels), "prefix": tpl.assistant_prefix, "marker": tpl.marker}
    funcs: list[RewardFunc] = [
        functools.update_wrapper(functools.partial(label_reward, **common), label_reward),
        functools.update_wrapper(functools.partial(format_reward, mode=mode,
                                                   min_explanation_words=min_explanation_words, **common),
                                 format_reward)]
    if length_target:
        funcs.append(functools.update_wrapper(functools.partial(length_penalty, target_tokens=length_target),
                                              length_penalty))
    return funcs
