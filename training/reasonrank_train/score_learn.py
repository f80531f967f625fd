"""``score-learn``: ProRank stage 2, fine-grained score learning from label-token logits.

No layer is added. For each (query, document) the model reads the direct prompt (ending at
``"Relevance:"``), exactly as :class:`reasonrank.ReasoningReranker` in ``mode="direct"`` does; the
log-probabilities of the label tokens (:func:`reasonrank.backends._text.label_tokens`) are renormalised over
the scale and the score is the expected label / top label - the same number the reranker returns. Losses
over a query's candidate list:

* ``listwise`` - ListNet: cross-entropy between ``softmax(gold / top / T)`` and ``softmax(score / T)``;
* ``pointwise`` - squared error between the score and ``gold / top``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasonrank._deps import require
from reasonrank.backends import LabelSpec
from reasonrank.backends._text import label_tokens, left_pad
from reasonrank.templates import DIRECT_TEMPLATE

from .config import ScoreLearnConfig
from .data import Example, candidate_lists, read_examples, render_example
from .modeling import load_model, load_tokenizer, lora_config, write_meta

__all__ = ["expected_scores", "listwise_loss", "pointwise_loss", "run_score_learn"]

logger = logging.getLogger(__name__)


def listwise_loss(scores: Any, gold: Any, temperature: float) -> Any:
    """ListNet loss of one list: ``scores`` and ``gold`` are 1-D tensors in [0, 1].

    Example:
        >>> import torch
        >>> good = listwise_loss(torch.tensor([0.9, 0.1]), torch.tensor([1.0, 0.0]), 0.1)
        >>> bad = listwise_loss(torch.tensor([0.1, 0.9]), torch.tensor([1.0, 0.0]), 0.1)
        >>> bool(good < bad)
        True
    """
    torch = require("torch", "train")
    target = torch.softmax(gold / temperature, dim=-1)
    return -(target * torch.log_softmax(scores / temperature, dim=-1)).sum()


def pointwise_loss(scores: Any, gold: Any) -> Any:
    """Mean squared error between scores and graded labels scaled to [0, 1].

    Example:
        >>> import torch
        >>> round(float(pointwise_loss(torch.tensor([0.5, 1.0]), torch.tensor([1.0, 1.0]))), 3)
        0.125
    """
    return ((scores - gold) ** 2).mean()


def expected_scores(label_logprobs: Any, labels: Sequence[int]) -> Any:
    """``[n, len(labels)]`` log-probabilities -> expected label / top label per row (renormalised).

    Example:
        >>> import torch
        >>> [round(x, 4) for x in expected_scores(torch.log(torch.tensor([[0.1, 0.1, 0.3]])), (0, 1, 2)).tolist()]
        [0.7]
    """
    torch = require("torch", "train")
    probs = torch.softmax(label_logprobs, dim=-1)
    values = torch.tensor([float(x) for x in labels], device=probs.device, dtype=probs.dtype)
    return (probs * values).sum(-1) / labels[-1]


class _Scorer:
    """Differentiable label-token scoring of direct prompts (same inputs as the transformers backend)."""

    def __init__(self, model: Any, tok: Any, labels: Sequence[int], device: str) -> None:
        self.torch = require("torch", "train")
        self.model, self.tok, self.labels, self.device = model, tok, tuple(labels), device
        spacer, cands = label_tokens(tok, LabelSpec(labels=self.labels, marker=DIRECT_TEMPLATE.marker))
        self.spacer = spacer
        self.groups = [cands[lab] for lab in self.labels]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(self, prompt: str) -> list[int]:
        return self.tok(prompt.rstrip(" "), add_special_tokens=False)["input_ids"] + self.spacer

    def __call__(self, seqs: list[list[int]]) -> Any:
        torch = self.torch
        enc = left_pad(torch, seqs, self.pad_id, self.device)
        logits = self.model(**enc, use_cache=False).logits[:, -1, :]
        logp = torch.log_softmax(logits.float(), dim=-1)
        per_label = torch.stack([torch.logsumexp(logp[:, g], dim=-1) for g in self.groups], dim=-1)
        return expected_scores(per_label, self.labels)


def _device(cfg: ScoreLearnConfig, torch: Any) -> str:
    return "cuda" if (torch.cuda.is_available() and not cfg.use_cpu) else "cpu"


def _dtype(cfg: ScoreLearnConfig, torch: Any, device: str) -> Any:
    if cfg.dtype == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, cfg.dtype)


def run_score_learn(cfg: ScoreLearnConfig) -> Path:
    """Train on candidate lists and save the full model (LoRA merged) + tokenizer + ``reasonrank.json``."""
    torch = require("torch", "train")
    torch.manual_seed(cfg.seed)
    device = _device(cfg, torch)
    tok = load_tokenizer(cfg.model or "")
    examples = read_examples(cfg.train_file or "", labels=cfg.label_scale, clip_labels=cfg.clip_labels,
                             max_examples=cfg.max_examples)
    lists = candidate_lists(examples, list_size=cfg.list_size, seed=cfg.seed)
    if not lists:
        raise ValueError(f"{cfg.train_file} has no query with two or more documents; score learning ranks a "
                         "query's candidates against each other: generate with candidates_per_query >= 2")
    model = load_model(cfg.model or "", dtype=_dtype(cfg, torch, device), load_in_4bit=cfg.load_in_4bit)
    peft_cfg = lora_config(cfg)
    if peft_cfg is not None:
        model = require("peft", "train").get_peft_model(model, peft_cfg)
    if not cfg.load_in_4bit:
        model.to(device)
    if cfg.activation_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    model.train()
    scorer = _Scorer(model, tok, cfg.label_scale, device)
    top = cfg.label_scale[-1]

    def encode(chunk: list[Example]) -> tuple[list[list[int]], Any]:
        seqs = [scorer.encode(render_example(tok, ex, mode="direct", labels=cfg.label_scale,
                                             max_doc_tokens=cfg.max_doc_tokens)) for ex in chunk]
        return seqs, torch.tensor([ex.label / top for ex in chunk], device=device, dtype=torch.float32)

    encoded = [encode(chunk) for chunk in lists]
    total = cfg.max_steps if cfg.max_steps > 0 else \
        max(1, math.ceil(len(encoded) * cfg.num_train_epochs / cfg.lists_per_step))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    logger.info("score-learn: %d lists (%d examples), %d steps, %s loss, device=%s", len(encoded), len(examples),
                total, cfg.loss, device)
    order = list(range(len(encoded)))
    rng = __import__("random").Random(cfg.seed)
    cursor, started, losses = len(order), time.time(), []
    for step in range(1, total + 1):
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(cfg.lists_per_step):
            if cursor >= len(order):
                rng.shuffle(order)
                cursor = 0
            seqs, gold = encoded[order[cursor]]
            cursor += 1
            scores = scorer(seqs)
            loss = listwise_loss(scores, gold, cfg.temperature) if cfg.loss == "listwise" else \
                pointwise_loss(scores, gold)
            (loss / cfg.lists_per_step).backward()
            step_loss += float(loss.detach()) / cfg.lists_per_step
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        losses.append(step_loss)
        if step % cfg.logging_steps == 0 or step == total:
            logger.info("score-learn step %d/%d loss %.4f (%.1fs)", step, total, step_loss, time.time() - started)
    model.eval()
    if peft_cfg is not None:
        model = model.merge_and_unload()
    out = Path(cfg.output_dir or "")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    write_meta(out, stage="score_learn", mode="direct", label_scale=cfg.label_scale, source_model=cfg.model or "",
               extra={"lists": len(encoded), "steps": total, "loss": cfg.loss, "final_loss": losses[-1]})
    return out
