"""Reasoning-format replay for ``score-learn``: the SFT completion loss, interleaved with score learning.

Score learning trains the adapter on the *direct* prompt only (label logits right after ``"Relevance:"``).
The same adapter serves reasoning mode, and without replay its explanations drift: measured on round 4,
10-15% of reasoning outputs wrote ``"Relevance:"`` followed by a sentence instead of a label (the verdict
no longer parses). With ``reasoning_file`` set, each score-learning step also takes the completion-only
language-model loss (the ``sft`` stage's loss: teacher explanation + ``"\\nRelevance: <label>"``) of
``reasoning_batch`` teacher examples, weighted by ``reasoning_weight`` - the prompts come from the one
prompt builder the reranker and the SFT stage use (:func:`reasonrank_train.data.render_example`).

A share ``reasoning_verdict_share`` of the replayed examples is given its label in the prompt (the template's
``verdict_note``), as ``explain_top_k`` gives the direct-mode label at serving time: the model learns to
explain a verdict it did not write (round 5, never shown a verdict, opened its explanation of the BM25
definition with "does not answer" although its direct label was 1).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from reasonrank._deps import require

from .data import Example, render_example, target_completion

__all__ = ["CompletionReplay", "completion_batch"]

IGNORE = -100


def completion_batch(torch: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
                     device: Any) -> dict[str, Any]:
    """Right-padded ``input_ids`` / ``attention_mask`` / ``labels`` of (prompt ids, completion ids) pairs;
    ``labels`` hold the completion ids only (prompt and padding: -100, ignored by the loss).

    Example:
        >>> import torch
        >>> b = completion_batch(torch, [([5, 6], [7]), ([5], [8, 9])], pad_id=0, device="cpu")
        >>> b["input_ids"].tolist(), b["labels"].tolist()
        ([[5, 6, 7], [5, 8, 9]], [[-100, -100, 7], [-100, 8, 9]])
    """
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for r, (p, c) in enumerate(pairs):
        if not c:
            raise ValueError(f"row {r} has an empty completion; every replayed example needs completion tokens")
        seq = list(p) + list(c)
        ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        labels[r, len(p):len(seq)] = torch.tensor(list(c), dtype=torch.long)
        mask[r, :len(seq)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


class CompletionReplay:
    """Reasoning-mode SFT examples served ``batch`` at a time (seeded shuffles, every example once per pass)."""

    def __init__(self, tok: Any, examples: Sequence[Example], *, labels: Sequence[int], max_doc_tokens: int,
                 batch: int, seed: int, verdict_share: float = 0.0) -> None:
        if batch < 1:
            raise ValueError(f"reasoning_batch must be >= 1, got {batch}")
        if not 0.0 <= verdict_share <= 1.0:
            raise ValueError(f"reasoning_verdict_share must be in [0, 1], got {verdict_share}")
        missing = [f"{ex.qid}/{ex.docid}" for ex in examples if not ex.explanation]
        if missing or not examples:
            raise ValueError(f"reasoning replay needs teacher explanations; {len(missing)} of {len(examples)} "
                             f"examples have none (e.g. {missing[:2]}): point reasoning_file at the teacher "
                             "output (data/teacher/explanations.jsonl) or set reasoning_weight: 0")
        def ids(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=False)["input_ids"])

        def prompt(ex: Example, with_verdict: bool) -> list[int]:
            return ids(render_example(tok, ex, mode="reasoning", labels=labels, max_doc_tokens=max_doc_tokens,
                                      with_verdict=with_verdict))

        self.pairs = [(prompt(ex, False), ids(target_completion(ex, mode="reasoning"))) for ex in examples]
        self.verdict_prompts = [prompt(ex, True) for ex in examples] if verdict_share else []
        self.verdict_share = verdict_share
        self.batch, self.rng = batch, random.Random(seed)
        self.order: list[int] = []
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def next(self) -> list[tuple[list[int], list[int]]]:
        """The next ``batch`` (prompt ids, completion ids) pairs; each given its verdict in the prompt with
        probability ``verdict_share``."""
        out = []
        for _ in range(self.batch):
            if not self.order:
                self.order = list(range(len(self.pairs)))
                self.rng.shuffle(self.order)
            i = self.order.pop()
            plain, completion = self.pairs[i]
            given = self.verdict_share and self.rng.random() < self.verdict_share
            out.append((self.verdict_prompts[i] if given else plain, completion))
        return out

    def loss(self, model: Any, device: str, *, autocast: bool) -> Any:
        """The completion loss of the next batch (differentiable): the causal-LM model's own loss on the
        ``labels`` of :func:`completion_batch` (next-token cross-entropy in fp32, -100 ignored)."""
        torch = require("torch", "train")
        enc = completion_batch(torch, self.next(), self.pad_id, device)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            return model(**enc, use_cache=False).loss
