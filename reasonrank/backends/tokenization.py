"""Tokenizer-side helpers shared by the local backends (transformers, vLLM).

Both backends render prompts, cut documents and find label tokens with the *same* Hugging Face
tokenizer code, so the token ids they feed their engines are identical and their scores comparable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .base import LabelSpec, Prompt

__all__ = [
    "label_step",
    "label_tokens",
    "logsumexp",
    "per_label_logprobs",
    "render_prompt",
    "tokenizer_control_strings",
    "truncate_text",
    "verdict_pattern",
    "verdict_reached",
]


def logsumexp(vals: Sequence[float]) -> float:
    """Numerically stable ``log(sum(exp(v)))``.

    Example:
        >>> round(logsumexp([math.log(0.25), math.log(0.5)]), 6) == round(math.log(0.75), 6)
        True
    """
    top = max(vals)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in vals))


def tokenizer_control_strings(tokenizer: Any) -> tuple[str, ...]:
    """The special-token strings of a Hugging Face tokenizer (chat control tokens such as ``<|im_end|>``),
    which :func:`reasonrank.safety.neutralize` breaks inside documents."""
    if tokenizer is None:
        return ()
    names = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            names.add(str(added.content))
    return tuple(sorted(n for n in names if len(n) > 1))


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_tokens`` tokens of ``tokenizer``; return (text, was_truncated)."""
    cut = len(text) > max_tokens * 32  # never tokenise megabytes to keep 500 tokens
    if cut:
        text = text[: max_tokens * 32]
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text, cut
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True), True


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The full prompt text: the model's chat template (generation prompt added), then the assistant prefix.

    Shared by inference (every tokenizer-based backend) and training, so trained models see exactly
    the text the reranker sends.

    Templates without a system role (e.g. Gemma) get the system message folded into the user turn;
    tokenizers without a chat template get the messages joined by blank lines after the BOS token.
    """
    msgs = list(prompt.messages)
    if tokenizer.chat_template:
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates without a system role: fold it into the user turn
            if msgs and msgs[0]["role"] == "system" and len(msgs) > 1:
                merged = [{"role": "user", "content": msgs[0]["content"] + "\n\n" + msgs[1]["content"]}]
                text = tokenizer.apply_chat_template(merged + msgs[2:], tokenize=False, add_generation_prompt=True)
            else:
                raise
    else:
        text = "".join(m["content"] + "\n\n" for m in msgs)
        if tokenizer.bos_token:
            text = tokenizer.bos_token + text
    return text + prompt.assistant_prefix


def label_tokens(tokenizer: Any, spec: LabelSpec) -> tuple[list[int], dict[int, list[int]]]:
    """(spacer token ids between marker and label, candidate token ids per label).

    The spacer is what the tokenizer puts between ``"Relevance:"`` and the digit (often a space
    token, or nothing when the space is merged into the digit token); the candidates of a label are
    its token in that position plus its bare and space-prefixed single-token forms.

    Raises:
        ValueError: a label is not a single token after the marker, or labels tokenise differently.
    """
    marker = spec.marker.strip()
    m_ids = tokenizer.encode(marker, add_special_tokens=False)
    spacer: list[int] | None = None
    cands: dict[int, list[int]] = {}
    for lab in spec.labels:
        f_ids = tokenizer.encode(f"{marker} {lab}", add_special_tokens=False)
        if f_ids[: len(m_ids)] != m_ids or len(f_ids) == len(m_ids):
            raise ValueError(f"tokenizer splits '{marker} {lab}' unexpectedly; use a marker ending in ':'")
        suffix = f_ids[len(m_ids):]
        if tokenizer.decode(suffix[-1:]).strip() != str(lab):
            raise ValueError(f"label {lab} is not a single token after {marker!r} for this tokenizer")
        if spacer is None:
            spacer = suffix[:-1]
        elif spacer != suffix[:-1]:
            raise ValueError(f"labels tokenise differently after {marker!r}; use single-digit labels")
        ids = {suffix[-1]}
        for variant in (str(lab), f" {lab}"):
            v = tokenizer.encode(variant, add_special_tokens=False)
            if len(v) == 1 and tokenizer.decode(v).strip() == str(lab):
                ids.add(v[0])
        cands[lab] = sorted(ids)
    return spacer or [], cands


def verdict_pattern(spec: LabelSpec) -> re.Pattern[str]:
    """Loose pattern of a written verdict (marker, a few non-digit characters, a digit)."""
    return re.compile(re.escape(spec.marker.strip().rstrip(":")) + r"[^\d\n]{0,8}\d", re.IGNORECASE)


def verdict_reached(tokenizer: Any, ids: Sequence[int], label_ids: set[int], pattern: re.Pattern[str]) -> bool:
    """True once the last generated token is a label token that completes a verdict (the stop rule)."""
    return bool(ids) and ids[-1] in label_ids and bool(
        pattern.search(tokenizer.decode(list(ids[-12:]), skip_special_tokens=True)))


def label_step(tokenizer: Any, ids: Sequence[int], pos: int) -> int | None:
    """Index of the first generated token whose decoded prefix reaches past character offset ``pos``."""
    for k in range(len(ids)):
        if len(tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True)) > pos:
            return k
    return None


def per_label_logprobs(flat: Iterable[tuple[int, int]], values: Iterable[float]) -> dict[int, float]:
    """Combine candidate-token log-probabilities into one per label (log of the summed probability).

    Args:
        flat: ``(label, token_id)`` pairs.
        values: Log-probability of each pair's token, in the same order.

    Example:
        >>> lp = per_label_logprobs([(0, 5), (0, 6), (1, 7)], [math.log(0.1), math.log(0.2), math.log(0.3)])
        >>> {k: round(math.exp(v), 3) for k, v in lp.items()}
        {0: 0.3, 1: 0.3}
    """
    per: dict[int, list[float]] = {}
    for (lab, _), v in zip(flat, values):
        per.setdefault(lab, []).append(v)
    return {lab: logsumexp(v) for lab, v in per.items()}


class LocalTokenizerMixin:
    """Text side of a backend that holds a Hugging Face ``tokenizer`` (transformers, vLLM): truncation,
    rendering and label-token lookup, identical across those backends."""

    tokenizer: Any
    _label_cache: dict[LabelSpec, tuple[list[int], dict[int, list[int]]]]

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        return truncate_text(self.tokenizer, text, max_tokens)

    def render(self, prompt: Prompt) -> str:
        """The full prompt text: the model's chat template, then the assistant prefix."""
        return render_prompt(self.tokenizer, prompt)

    def label_tokens(self, spec: LabelSpec) -> tuple[list[int], dict[int, list[int]]]:
        """(spacer token ids between marker and label, candidate token ids per label), cached per spec."""
        cache = self.__dict__.setdefault("_label_cache", {})
        if spec not in cache:
            cache[spec] = label_tokens(self.tokenizer, spec)
        return cache[spec]


def left_pad(torch: Any, seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> dict[str, Any]:
    """Left-padded ``input_ids``, ``attention_mask`` and matching ``position_ids`` (padding ignored)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[r, width - len(s):] = 1
    ids, mask = ids.to(device), mask.to(device)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
