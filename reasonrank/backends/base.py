"""The small protocol every inference backend implements.

The reranker owns prompts, parsing and scoring; a backend owns an engine. It renders chat
messages with the model's template, truncates documents to a token budget, and answers two
questions:

* :meth:`Backend.label_logprobs` - given prompts that end right at the label marker, the
  log-probability of each label as the next token (direct mode, and reasoning fallbacks): per prompt a
  plain ``{label: logprob}`` mapping, or a :class:`LabelScores` (which can also carry a per-document error);
* :meth:`Backend.generate` - generate an explanation+verdict and report the label-token
  log-probabilities at the position where the verdict's label was written (a :class:`Generation`).

and, optionally, a third: :meth:`Backend.continuation_logprobs` - the mean log-probability of a text's
tokens after a context (the query-likelihood signal of ``likelihood_weight``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Backend", "LabelSpec", "Prompt", "Generation", "LocateLabel", "LabelScores", "LabelReply",
           "LabelRequest", "GenerateRequest", "LikelihoodRequest", "Request"]

LocateLabel = Callable[[str], "int | None"]
"""Given generated text, return the character offset of the verdict's label digit, or None."""


@dataclass(frozen=True)
class LabelSpec:
    """The label scale and marker a backend scores against."""

    labels: tuple[int, ...]
    marker: str = "Relevance:"


@dataclass(frozen=True)
class Prompt:
    """One chat prompt: messages, plus text the assistant turn starts with."""

    messages: tuple[dict[str, str], ...]
    assistant_prefix: str = ""


@dataclass(frozen=True)
class Generation:
    """A backend's answer to one generation request.

    Attributes:
        text: Generated text (after the assistant prefix), special tokens removed.
        label_logprobs: Log-probability per label at the token where the verdict's label was
            written, or None if the backend could not find that token (the reranker then scores
            with a second, forced pass).
        num_tokens: Number of generated tokens.
        error: Why the engine failed on this document (then the result is reported with ``error``), or None.
        forced_logprobs: For a text without a verdict, the forced verdict: the log-probability per label after
            the assistant prefix and the text (trailing whitespace dropped) followed by ``"\\n" + marker``,
            computed by the backend from its own generation state (the transformers backend continues the
            generation's KV cache). None: the reranker forces the verdict in a second pass
            (:meth:`Backend.label_logprobs`).
    """

    text: str
    label_logprobs: dict[int, float] | None = None
    num_tokens: int = 0
    error: str | None = field(default=None)
    forced_logprobs: dict[int, float] | None = None


@dataclass(frozen=True)
class LabelScores:
    """A backend's answer for one prompt of :meth:`Backend.label_logprobs`.

    A backend may answer a prompt with a plain ``{label: logprob}`` mapping (success) or with this value,
    which can also say that the engine failed on that document; :meth:`of` turns either into a
    ``LabelScores``, the one place the reranker reads replies.

    Attributes:
        logprobs: Next-token log-probability per label; labels the engine cannot see are left out (they
            count as probability 0). Empty when ``error`` is set.
        error: Why the engine failed on this document (the reranker then reports its result with ``error``
            set, as for a :class:`Generation` with ``error``), or None.

    Example:
        >>> LabelScores.of({0: -2.3, 1: -0.1}).ok
        True
        >>> LabelScores.failed("HTTP 400: prompt too long")
        LabelScores(logprobs={}, error='HTTP 400: prompt too long')
    """

    logprobs: Mapping[int, float]
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the engine scored the document (``error`` is None)."""
        return self.error is None

    @classmethod
    def failed(cls, error: str) -> LabelScores:
        """The answer for a document the engine failed on (no log-probabilities)."""
        return cls(logprobs={}, error=str(error))

    @classmethod
    def of(cls, reply: LabelReply) -> LabelScores:
        """Normalise one reply of :meth:`Backend.label_logprobs`: a mapping is a success, a ``LabelScores``
        is kept as it is.

        Raises:
            TypeError: the reply is neither (the backend breaks the contract).
        """
        if isinstance(reply, LabelScores):
            return reply
        if isinstance(reply, Mapping):
            return cls(logprobs=reply)
        raise TypeError(f"Backend.label_logprobs must answer each prompt with a {{label: logprob}} mapping or a "
                        f"LabelScores, got {type(reply).__name__}")


LabelReply = Mapping[int, float] | LabelScores
"""What :meth:`Backend.label_logprobs` may answer per prompt: a plain mapping (success) or :class:`LabelScores`."""


@dataclass(frozen=True)
class LabelRequest:
    """What the reranker's plan asks a driver for: :meth:`Backend.label_logprobs` of these prompts."""

    prompts: list[Prompt]


@dataclass(frozen=True)
class GenerateRequest:
    """What the reranker's plan asks a driver for: :meth:`Backend.generate` of these prompts."""

    prompts: list[Prompt]


@dataclass(frozen=True)
class LikelihoodRequest:
    """What the reranker's plan asks a driver for: :meth:`Backend.continuation_logprobs` of these
    (context, continuation) pairs."""

    pairs: list[tuple[str, str]]


Request = LabelRequest | GenerateRequest | LikelihoodRequest
"""A planning step of :class:`reasonrank.ReasoningReranker`; the sync and async drivers answer it."""


class Backend(ABC):
    """Base class of inference backends; register subclasses with :func:`register_backend`."""

    name: str = "base"
    model_meta: Mapping[str, Any] = MappingProxyType({})
    """The ``reasonrank.json`` of the model this backend was built for (set by :class:`ReasoningReranker`;
    empty for a model without one): a reranker built on this backend instance reads its defaults (mode, label
    scale, template, fusion weight) from here, as one built from the model name does."""

    @abstractmethod
    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        """Cut ``text`` to at most ``max_tokens`` tokens; return (text, was_truncated)."""

    @abstractmethod
    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> Sequence[LabelReply]:
        """For prompts whose assistant prefix ends with ``spec.marker``, the next-token log-probability
        of each label (labels the engine cannot see are left out): one reply per prompt, in order, either
        a ``{label: logprob}`` mapping or a :class:`LabelScores` (``LabelScores.failed(error)`` for a
        document the engine failed on, under a per-document failure policy)."""

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        """Generate one completion per prompt; fill ``label_logprobs`` at the label located by ``locate``."""

    async def alabel_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> Sequence[LabelReply]:
        """Async variant; the default runs the sync method in a worker thread."""
        return await asyncio.to_thread(self.label_logprobs, prompts, spec)

    async def agenerate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                        max_new_tokens: int) -> list[Generation]:
        """Async variant; the default runs the sync method in a worker thread."""
        return await asyncio.to_thread(self.generate, prompts, spec, locate=locate, max_new_tokens=max_new_tokens)

    def continuation_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """For each (context, continuation) of plain text (no chat template), the mean log-probability per
        token of the continuation's tokens after the context's: one finite float per pair, in order."""
        raise NotImplementedError(f"the {self.name} backend does not compute query likelihoods; use the "
                                  "transformers backend, or pass likelihood_weight=0")

    @property
    def computes_likelihood(self) -> bool:
        """Whether this backend implements :meth:`continuation_logprobs`."""
        return type(self).continuation_logprobs is not Backend.continuation_logprobs

    async def acontinuation_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Async variant; the default runs the sync method in a worker thread."""
        return await asyncio.to_thread(self.continuation_logprobs, pairs)

    def control_strings(self) -> tuple[str, ...]:
        """The model's special-token strings (chat control tokens), neutralised inside documents.

        The default reads them from a ``tokenizer`` attribute when the backend has one.
        """
        from .tokenization import tokenizer_control_strings

        return tokenizer_control_strings(getattr(self, "tokenizer", None))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources (optional)."""

    def describe(self) -> str:
        """One line for logs and the CLI."""
        return self.name
