"""Tokenizer-side helpers shared by the local backends (transformers, vLLM).

Both backends render prompts, cut documents, encode prompts, find label tokens, cut generations at their
end and read the verdict's label with the *same* Hugging Face tokenizer code, so the token ids they feed
their engines are identical and their scores comparable; each backend keeps only its engine calls.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..parsing import Verdict, find_verdicts
from .base import Generation, LabelSpec, LocateLabel, Prompt

__all__ = [
    "LocalTokenizerMixin",
    "check_context",
    "check_generation_budget",
    "continuation_chunk",
    "encode_prompt",
    "eos_pad_ids",
    "finish_generation",
    "label_candidates",
    "label_step",
    "label_tokens",
    "left_pad",
    "logsumexp",
    "per_label_logprobs",
    "render_prompt",
    "tokenizer_control_strings",
    "truncate_text",
    "until_stop",
    "verdict_finder",
    "verdict_reached",
]

S = TypeVar("S")


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


def label_candidates(cands: Mapping[int, Sequence[int]]) -> list[tuple[int, int]]:
    """The ``(label, token_id)`` pairs of every candidate token (from :func:`label_tokens`), labels in order:
    the columns a backend reads log-probabilities for, combined again by :func:`per_label_logprobs`.

    Example:
        >>> label_candidates({0: [15, 220], 1: [16]})
        [(0, 15), (0, 220), (1, 16)]
    """
    return [(lab, tid) for lab, ids in cands.items() for tid in ids]


def verdict_finder(spec: LabelSpec) -> Callable[[str], list[Verdict]]:
    """The verdicts of a text, in the parser's grammar (:func:`reasonrank.parsing.find_verdicts`): the stop
    rule of generation stops exactly where the parser will read the verdict."""
    return functools.partial(find_verdicts, marker=spec.marker)


def verdict_reached(tokenizer: Any, ids: Sequence[int], label_ids: set[int],
                    finder: Callable[[str], list[Verdict]]) -> bool:
    """True once the last generated token is a label token that completes a verdict (the stop rule)."""
    if not ids or ids[-1] not in label_ids:
        return False
    tail = tokenizer.decode(list(ids[-12:]), skip_special_tokens=True)
    return any(v.end == len(tail.rstrip()) for v in finder(tail))


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


def encode_prompt(tokenizer: Any, text: str, context_length: int | None = None, *, owner: str = "model",
                  hint: str | None = None) -> list[int]:
    """Token ids of a rendered prompt (no special tokens added: the chat template has written them).

    Args:
        tokenizer: A Hugging Face tokenizer.
        text: The rendered prompt (:func:`render_prompt`).
        context_length: The most tokens the engine takes (None: no limit).
        owner: Whose context the error message names (``"model"``, ``"engine"``).
        hint: One more way out that the error message offers (e.g. ``"raise max_model_len"``).

    Raises:
        ValueError: the prompt is longer than ``context_length``.
    """
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return check_context(ids, context_length, owner=owner, hint=hint)


def check_context(ids: list[int], context_length: int | None, *, owner: str = "model", hint: str | None = None,
                  what: str = "a prompt") -> list[int]:
    """``ids``, or ValueError when they are longer than ``context_length`` (see :func:`encode_prompt`)."""
    if context_length and len(ids) > context_length:
        fix = f"lower max_doc_tokens, shorten the query, or {hint}" if hint else \
            "lower max_doc_tokens or shorten the query"
        raise ValueError(f"{what} is {len(ids)} tokens, over the {owner}'s context of {context_length}; {fix}")
    return ids


def check_generation_budget(seqs: Sequence[Sequence[int]], max_new_tokens: int, context_length: int | None, *,
                            owner: str = "model", hint: str | None = None) -> None:
    """Raise ValueError when the longest prompt plus ``max_new_tokens`` exceeds ``context_length`` (see
    :func:`encode_prompt` for ``owner`` and ``hint``); no limit when ``context_length`` is None."""
    longest = max((len(s) for s in seqs), default=0)
    if context_length and longest + max_new_tokens > context_length:
        raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) exceeds the {owner}'s "
                         f"context of {context_length}; lower max_doc_tokens or max_new_tokens"
                         + (f", or {hint}" if hint else ""))


def eos_pad_ids(tokenizer: Any, eos_token_id: int | list[int] | None = None) -> tuple[set[int], int | None]:
    """(end-of-sequence ids, padding id) as generation sees them: ``eos_token_id`` of the model's generation
    config (an id or a list), else the tokenizer's; the tokenizer's padding id, else its EOS id.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> eos_pad_ids(NS(eos_token_id=2, pad_token_id=None), [2, 7])
        ({2, 7}, 2)
    """
    eos = eos_token_id if eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return eos_ids, pad


def until_stop(ids: Iterable[int], stop: Collection[int]) -> list[int]:
    """The generated ids before the first end-of-sequence or padding id of ``stop``.

    Example:
        >>> until_stop([5, 6, 2, 0, 0], {0, 2})
        [5, 6]
    """
    out: list[int] = []
    for t in ids:
        if t in stop:
            break
        out.append(t)
    return out


def continuation_chunk(prompt: Sequence[int], generated: Sequence[int], target: Sequence[int],
                       cached: int) -> tuple[int, list[int]] | None:
    """How a forward pass continues a generation's KV cache so that it reads exactly the tokens of ``target``.

    ``target`` is what a fresh pass would read (e.g. the forced-verdict prompt: prompt, the output without its
    trailing whitespace, ``"\\n" + marker``); the cache holds ``prompt`` and the first ``cached`` generated
    tokens. Returns ``(k, chunk)`` with ``prompt + generated[:k] + chunk == target``: ``k`` cached generated
    tokens are kept (the rest are masked) and ``chunk`` (never empty: its last position is read) is fed. The
    kept tokens are the longest cached run that ``target`` repeats, so trailing whitespace the output drops,
    tokens the tokenizer merges differently (``".\\n"``) or splits differently (a byte-level token decoded to
    U+FFFD) are fed again as ``target`` has them. None when ``target`` does not start with ``prompt``.

    Example:
        >>> continuation_chunk([1, 2], [5, 6, 9, 9], [1, 2, 5, 6, 7, 8], cached=3)  # 9, 9: dropped whitespace
        (2, [7, 8])
        >>> continuation_chunk([1, 2], [5, 6], [1, 2, 5, 6, 7], cached=1)  # 6 was never fed: feed it now
        (1, [6, 7])
        >>> continuation_chunk([1, 2], [5], [1, 3, 7], cached=1) is None  # the target changes the prompt
        True
    """
    n = len(prompt)
    if len(target) <= n or list(target[:n]) != list(prompt):
        return None
    k, limit = 0, min(len(generated), cached, len(target) - n - 1)
    while k < limit and generated[k] == target[n + k]:
        k += 1
    return k, list(target[n + k:])


def finish_generation(tokenizer: Any, ids: list[int], locate: LocateLabel, label_ids: Collection[int],
                      steps: Sequence[S], read_step: Callable[[S], dict[int, float]]) -> Generation:
    """A backend's :class:`~reasonrank.backends.Generation` from its generated ids (already cut at the stop):
    the text, and the label log-probabilities at the token where the verdict's label was written.

    Args:
        tokenizer: The tokenizer that wrote ``ids``.
        ids: The generated token ids.
        locate: The reranker's label locator (character offset of the verdict's label in the text, or None).
        label_ids: Token ids of every label candidate (:func:`label_candidates`).
        steps: Per generated token, what the engine recorded (log-probabilities, in the engine's shape).
        read_step: Turns one step's record into ``{label: logprob}``.

    ``label_logprobs`` is None (the reranker then forces the verdict, see ``Generation.forced_logprobs``) when the
    text has no verdict, its label is not at a label token, or the engine recorded no step there.
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    pos = locate(text)
    step = label_step(tokenizer, ids, pos) if pos is not None else None
    if step is None or step >= len(steps) or ids[step] not in label_ids:
        return Generation(text=text, label_logprobs=None, num_tokens=len(ids))
    return Generation(text=text, label_logprobs=read_step(steps[step]) or None, num_tokens=len(ids))


class LocalTokenizerMixin:
    """Text side of a backend that holds a Hugging Face ``tokenizer`` (transformers, vLLM): truncation,
    rendering, prompt encoding and label-token lookup, identical across those backends.

    The backend sets ``tokenizer``, ``context_length`` (None: unbounded), ``eos_ids`` and ``pad_id``
    (:func:`eos_pad_ids`); ``context_owner`` and ``context_hint`` shape the context-overflow message.
    """

    tokenizer: Any
    context_length: int | None
    eos_ids: set[int]
    pad_id: int | None
    context_owner: str = "model"
    context_hint: str | None = None
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

    def label_candidates(self, spec: LabelSpec) -> list[tuple[int, int]]:
        """The ``(label, token_id)`` pairs of every label candidate (:func:`label_candidates`)."""
        return label_candidates(self.label_tokens(spec)[1])

    def _encode(self, text: str) -> list[int]:
        return encode_prompt(self.tokenizer, text, self.context_length, owner=self.context_owner,
                             hint=self.context_hint)

    def label_inputs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """Token ids of label-pass prompts (the rendered prompt without its trailing space, then the spacer
        the tokenizer puts before a label) and the label candidates to read at the next token."""
        spacer, cands = self.label_tokens(spec)
        return [self._encode(self.render(p).rstrip(" ")) + spacer for p in prompts], label_candidates(cands)

    def generation_inputs(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[list[int]]:
        """Token ids of generation prompts, checked to leave room for ``max_new_tokens`` in the context."""
        seqs = [self._encode(self.render(p)) for p in prompts]
        check_generation_budget(seqs, max_new_tokens, self.context_length, owner=self.context_owner,
                                hint=self.context_hint)
        return seqs

    def likelihood_inputs(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
        """Token ids of (context, continuation) pairs, context then continuation, each tokenised on its own
        (no special tokens), and where each continuation starts."""
        seqs, starts = [], []
        for context, continuation in pairs:
            head, tail = (self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in (context, continuation))
            if not tail:
                raise ValueError("a likelihood continuation (the query) has no tokens; pass a non-empty query")
            seqs.append(check_context(head + tail, self.context_length, owner=self.context_owner,
                                      hint=self.context_hint, what="a likelihood prompt"))
            starts.append(len(head))
        return seqs, starts

    @property
    def end_ids(self) -> set[int]:
        """Token ids that end a generation: the EOS ids and the padding id."""
        return self.eos_ids | ({self.pad_id} if self.pad_id is not None else set())


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
