"""``score-learn``: ProRank stage 2, fine-grained score learning from label-token logits.

No layer is added. For each (query, document) the model reads the direct prompt (ending at
``"Relevance:"``), exactly as :class:`reasonrank.ReasoningReranker` in ``mode="direct"`` does; the
log-probabilities of the label tokens (:func:`reasonrank.backends.tokenization.label_tokens`) are renormalised over
the scale and the score is the expected label / top label - the same number the reranker returns. Losses
over a query's candidate list:

* ``group`` (default) - one query's group (a positive and ``group_size - 1`` negatives; a group never lacks
  a positive): softmax cross-entropy over the group on the label-logit margin ``m = log p(top) - log
  p(bottom)``, plus ``bce_weight`` x binary cross-entropy of ``sigmoid(m)`` against the gold label (the
  ProRank / mxbai-rerank-v2 recipe: a ranking loss and a calibrated pointwise one on the same logits);
  with ``query_negatives``, also groups that keep a positive's document and change the question
  (:mod:`reasonrank_train.groups`);
* ``listwise`` - ListNet: cross-entropy between ``softmax(gold / top / T)`` and ``softmax(score / T)``;
* ``pointwise`` - squared error between the score and ``gold / top``.

With ``eval_collection`` set (one fold or a list), the model is scored on the dev fold(s) every ``eval_steps`` steps (nDCG@10 of
reranking a first-stage run) and the best checkpoint is the one saved; ``patience`` stops early.
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
from reasonrank.backends.dtypes import resolve_dtype
from reasonrank.backends.tokenization import label_tokens, left_pad
from reasonrank.templates import DIRECT_TEMPLATE

from .config import ScoreLearnConfig
from .data import Example, candidate_lists, read_examples, render_example
from .groups import positive_groups, query_groups, repeat_sources
from .modeling import load_tokenizer, load_trainable, write_meta

__all__ = ["expected_scores", "group_loss", "label_margin", "listwise_loss", "pointwise_loss", "run_score_learn"]

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


def group_loss(margins: Any, gold: Any, *, temperature: float = 1.0, bce_weight: float = 1.0) -> Any:
    """Softmax cross-entropy over one group's label-logit margins (gold > 0 is the target set) plus
    ``bce_weight`` x BCE of each margin against ``gold > 0``.

    Example:
        >>> import torch
        >>> gold = torch.tensor([1.0, 0.0, 0.0])
        >>> good = group_loss(torch.tensor([3.0, -2.0, -1.0]), gold)
        >>> bad = group_loss(torch.tensor([-2.0, 3.0, 1.0]), gold)
        >>> bool(good < bad)
        True
    """
    torch = require("torch", "train")
    pos = (gold > 0).float()
    if not bool(pos.any()):
        raise ValueError("a score-learning group has no positive; build groups with positive_groups()")
    logp = torch.log_softmax(margins / temperature, dim=-1)
    ce = -(torch.logsumexp(logp.masked_fill(pos == 0, float("-inf")), dim=-1))
    if bce_weight:
        ce = ce + bce_weight * torch.nn.functional.binary_cross_entropy_with_logits(margins, pos)
    return ce


def label_margin(label_logprobs: Any) -> Any:
    """``[n, len(labels)]`` log-probabilities -> ``log p(top label) - log p(bottom label)`` per row.

    Example:
        >>> import torch
        >>> [round(x, 4) for x in label_margin(torch.log(torch.tensor([[0.2, 0.8]]))).tolist()]
        [1.3863]
    """
    return label_logprobs[:, -1] - label_logprobs[:, 0]


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


MAX_NONFINITE = 3  # consecutive non-finite steps before score-learn stops
_FIX = ("lower learning_rate, train over float32 weights (dtype: float32, or auto: bf16 autocast on CPUs that have "
        "it) or check the data (--set max_steps=2 reproduces it quickly)")


class NonFiniteTraining(RuntimeError):
    """Score learning diverged: its loss or its dev scores are NaN or infinite."""


class _Scorer:
    """Differentiable label-token scoring of direct prompts (same inputs as the transformers backend)."""

    def __init__(self, model: Any, tok: Any, labels: Sequence[int], device: str, autocast: bool = False) -> None:
        self.torch = require("torch", "train")
        self.autocast = autocast
        self.model, self.tok, self.labels, self.device = model, tok, tuple(labels), device
        spacer, cands = label_tokens(tok, LabelSpec(labels=self.labels, marker=DIRECT_TEMPLATE.marker))
        self.spacer = spacer
        self.groups = [cands[lab] for lab in self.labels]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(self, prompt: str) -> list[int]:
        return self.tok(prompt.rstrip(" "), add_special_tokens=False)["input_ids"] + self.spacer

    def label_logprobs(self, seqs: list[list[int]]) -> Any:
        """``[n, len(labels)]`` label log-probabilities at the label position (fp32)."""
        torch = self.torch
        enc = left_pad(torch, seqs, self.pad_id, self.device)
        with torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(**enc, use_cache=False, logits_to_keep=1).logits
        logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        return torch.stack([torch.logsumexp(logp[:, g], dim=-1) for g in self.groups], dim=-1)

    def __call__(self, seqs: list[list[int]]) -> Any:
        return expected_scores(self.label_logprobs(seqs), self.labels)


def _device(cfg: ScoreLearnConfig, torch: Any) -> str:
    return "cuda" if (torch.cuda.is_available() and not cfg.use_cpu) else "cpu"


def _dtype(cfg: ScoreLearnConfig, torch: Any, device: str) -> Any:
    dtype = resolve_dtype(cfg.dtype, torch)
    if dtype is None:  # auto: bf16 weights on a bf16 GPU (PEFT keeps adapter weights fp32); fp32 on CPU (see _autocast)
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return dtype


def _autocast(cfg: ScoreLearnConfig, device: str) -> bool:
    """bf16 autocast over fp32 weights on CPUs with native bf16 (about 1.7x faster than fp32 there)."""
    if cfg.dtype != "auto" or device != "cpu":
        return False
    from reasonrank.backends.dtypes import cpu_has_bf16

    return cpu_has_bf16()


class _DevFold:
    """nDCG@10 on one dev fold: rerank the top ``depth`` of a first-stage run with the model being trained."""

    def __init__(self, cfg: ScoreLearnConfig, tok: Any, collection: str, first_stage: str) -> None:
        from reasonrank.evaluation import load_beir, read_trec_run

        col = load_beir(collection, cfg.eval_split)
        run = read_trec_run(first_stage)
        qids = sorted(q for q in col.queries if q in run)
        if cfg.eval_max_queries:
            import random

            qids = sorted(random.Random(cfg.seed).sample(qids, min(len(qids), cfg.eval_max_queries)))
        self.name = Path(collection).name
        self.col, self.first = col, {q: run[q] for q in qids}
        self.seqs: dict[str, tuple[list[str], list[list[int]]]] = {}
        self.tok, self.cfg = tok, cfg

    def __call__(self, scorer: _Scorer) -> tuple[float, float]:
        from reasonrank.evaluation import evaluate

        torch, cfg = scorer.torch, self.cfg
        if not self.seqs:
            for q, docs in self.first.items():
                head = sorted(docs, key=lambda d: -docs[d])[:cfg.eval_depth]
                exs = [Example(q, d, self.col.queries[q], self.col.corpus[d].text, 0, title=self.col.corpus[d].title)
                       for d in head]
                self.seqs[q] = (head, [scorer.encode(render_example(self.tok, ex, mode="direct",
                                                                   labels=cfg.label_scale,
                                                                   max_doc_tokens=cfg.max_doc_tokens)) for ex in exs])
        run: dict[str, dict[str, float]] = {}
        was_training = scorer.model.training
        scorer.model.eval()
        with torch.inference_mode():
            for q, (head, seqs) in self.seqs.items():
                scores: list[float] = []
                for i in range(0, len(seqs), cfg.eval_batch_size):
                    scores += scorer(seqs[i:i + cfg.eval_batch_size]).float().tolist()
                bad = sum(not math.isfinite(x) for x in scores)
                if bad:  # NaN scores rank arbitrarily and could win model selection
                    raise NonFiniteTraining(
                        f"score-learn: the model gives {bad} of {len(scores)} dev documents of query {q!r} a "
                        f"non-finite score: its weights diverged; {_FIX}")
                run[q] = {d: sc - 1e-9 * k for k, (d, sc) in enumerate(zip(head, scores))}
        if was_training:
            scorer.model.train()
        qrels = {q: self.col.qrels[q] for q in run}
        base = evaluate(qrels, {q: dict(self.first[q]) for q in run}, ["nDCG@10"])[0]["nDCG@10"]
        return evaluate(qrels, run, ["nDCG@10"])[0]["nDCG@10"], base


class _DevEval:
    """Model selection over one or more dev folds: the mean of their nDCG@10 (and of their first stages')."""

    def __init__(self, cfg: ScoreLearnConfig, tok: Any) -> None:
        self.folds = [_DevFold(cfg, tok, c, r) for c, r in zip(*cfg.eval_folds())]

    def __call__(self, scorer: _Scorer) -> tuple[float, float, dict[str, float]]:
        per = {f.name: f(scorer) for f in self.folds}
        n = len(per)
        return (sum(v[0] for v in per.values()) / n, sum(v[1] for v in per.values()) / n,
                {name: round(v[0], 4) for name, v in per.items()})


def _groups(cfg: ScoreLearnConfig, examples: list[Example]) -> list[list[Example]]:
    if cfg.loss == "group":
        groups = positive_groups(examples, group_size=cfg.group_size, seed=cfg.seed)
        if cfg.query_negatives:
            groups += query_groups(examples, negatives=cfg.query_negatives, seed=cfg.seed + 2)
        groups = repeat_sources(groups, cfg.source_repeat)
        if not groups:
            raise ValueError(f"{cfg.train_file} has no query with a positive and a negative; group score learning "
                             "needs both (build data with `reasonrank-train data`)")
        if cfg.inject_promote or cfg.inject_demote or cfg.inject_noise:
            from .augment import inject

            groups = inject(groups, promote=cfg.inject_promote, demote=cfg.inject_demote, noise=cfg.inject_noise,
                            seed=cfg.seed)
        if cfg.drop_title:
            from .augment import drop_titles

            groups = drop_titles(groups, rate=cfg.drop_title, seed=cfg.seed + 1)
        return groups
    lists = candidate_lists(examples, list_size=cfg.list_size, seed=cfg.seed)
    if not lists:
        raise ValueError(f"{cfg.train_file} has no query with two or more documents; score learning ranks a "
                         "query's candidates against each other: generate with candidates_per_query >= 2")
    return lists


def run_score_learn(cfg: ScoreLearnConfig) -> Path:
    """Train on groups (or candidate lists) and save the model (with ``use_lora``, its adapter) + tokenizer +
    ``reasonrank.json``; with a dev fold, the best checkpoint by dev nDCG@10."""
    torch = require("torch", "train")
    torch.manual_seed(cfg.seed)
    device = _device(cfg, torch)
    tok = load_tokenizer(cfg.model or "")
    examples = read_examples(cfg.train_file or "", labels=cfg.label_scale, clip_labels=cfg.clip_labels,
                             max_examples=cfg.max_examples)
    groups = _groups(cfg, examples)
    model, peft_cfg = load_trainable(cfg, dtype=_dtype(cfg, torch, device))
    if peft_cfg is not None:
        model = require("peft", "train").get_peft_model(model, peft_cfg)
    if not cfg.load_in_4bit:
        model.to(device)
    if cfg.activation_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    model.train()
    scorer = _Scorer(model, tok, cfg.label_scale, device, autocast=_autocast(cfg, device))
    top = cfg.label_scale[-1]

    def encode(chunk: list[Example]) -> tuple[list[list[int]], Any]:
        seqs = [scorer.encode(render_example(tok, ex, mode="direct", labels=cfg.label_scale,
                                             max_doc_tokens=cfg.max_doc_tokens)) for ex in chunk]
        return seqs, torch.tensor([ex.label / top for ex in chunk], device=device, dtype=torch.float32)

    encoded = [encode(chunk) for chunk in groups]
    total = cfg.max_steps if cfg.max_steps > 0 else \
        max(1, math.ceil(len(encoded) * cfg.num_train_epochs / cfg.lists_per_step))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = int(total * cfg.warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) if s < warmup
                                              else max(0.0, (total - s) / max(1, total - warmup)))
    logger.info("score-learn: %d groups (%d examples), %d steps, %s loss, device=%s, bf16 autocast=%s",
                len(encoded), len(examples), total, cfg.loss, device, scorer.autocast)
    replay = None
    if cfg.reasoning_file and cfg.reasoning_weight:
        from .completion_loss import CompletionReplay

        replay = CompletionReplay(tok, read_examples(cfg.reasoning_file, labels=cfg.label_scale,
                                                     clip_labels=cfg.clip_labels, require_explanations=True),
                                  labels=cfg.label_scale, max_doc_tokens=cfg.max_doc_tokens,
                                  batch=cfg.reasoning_batch, seed=cfg.seed,
                                  verdict_share=cfg.reasoning_verdict_share)
        logger.info("score-learn: replaying %d reasoning examples from %s, %d per step, weight %.2f, %.0f%% given "
                    "their verdict", len(replay.pairs), cfg.reasoning_file, cfg.reasoning_batch,
                    cfg.reasoning_weight, 100 * cfg.reasoning_verdict_share)
    dev = _DevEval(cfg, tok) if cfg.eval_folds()[0] else None
    out = Path(cfg.output_dir or "")

    def save(extra: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), safe_serialization=True)
        tok.save_pretrained(str(out))
        write_meta(out, stage="score_learn", mode="direct", label_scale=cfg.label_scale,
                   source_model=cfg.model or "", extra={"groups": len(encoded), "loss": cfg.loss, **extra})

    best: tuple[float, int] = (-1.0, 0)
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = []
    stale = 0

    def evaluate_now(step: int) -> bool:
        nonlocal best, best_state, stale
        if dev is None:
            return False
        ndcg, base, per_fold = dev(scorer)
        history.append({"step": step, "dev_ndcg@10": round(ndcg, 4), "first_stage_ndcg@10": round(base, 4),
                        **({f"dev_ndcg@10:{k}": v for k, v in per_fold.items()} if len(per_fold) > 1 else {})})
        logger.info("score-learn step %d: dev nDCG@10 %.4f %s(first stage %.4f, best %.4f at %d)", step, ndcg,
                    f"{per_fold} " if len(per_fold) > 1 else "", base, best[0], best[1])
        if ndcg > best[0]:
            best, stale = (ndcg, step), 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if step:  # on disk as soon as it is found: a killed run keeps its best checkpoint
                save({"steps": step, "best_step": step, "best_dev_ndcg@10": round(ndcg, 4), "dev_history": history,
                      "partial": True})
        else:
            stale += 1
        return bool(cfg.patience and stale >= cfg.patience)

    if cfg.eval_at_start:
        evaluate_now(0)
    order = list(range(len(encoded)))
    rng = __import__("random").Random(cfg.seed)
    cursor, started, losses = len(order), time.time(), []
    replay_losses: list[float] = []
    skipped: list[int] = []
    for step in range(1, total + 1):
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for _ in range(cfg.lists_per_step):
            if cursor >= len(order):
                rng.shuffle(order)
                cursor = 0
            seqs, gold = encoded[order[cursor]]
            cursor += 1
            if cfg.loss == "group":
                loss = group_loss(label_margin(scorer.label_logprobs(seqs)), gold, temperature=cfg.temperature,
                                  bce_weight=cfg.bce_weight)
            else:
                scores = scorer(seqs)
                loss = listwise_loss(scores, gold, cfg.temperature) if cfg.loss == "listwise" else \
                    pointwise_loss(scores, gold)
            (loss / cfg.lists_per_step).backward()
            step_loss += float(loss.detach()) / cfg.lists_per_step
        if replay is not None:
            replay_loss = replay.loss(model, device, autocast=scorer.autocast)
            (cfg.reasoning_weight * replay_loss).backward()
            replay_losses.append(float(replay_loss.detach()))
        if not (math.isfinite(step_loss) and (replay is None or math.isfinite(replay_losses[-1]))):
            skipped.append(step)  # a non-finite loss's gradients would turn every weight into NaN
            logger.warning("score-learn step %d: non-finite loss (%s), update skipped", step, step_loss)
            if skipped[-MAX_NONFINITE:] == list(range(step - MAX_NONFINITE + 1, step + 1)):
                raise NonFiniteTraining(f"score-learn: the loss was not finite at steps {skipped[-MAX_NONFINITE:]} "
                                        f"(learning_rate {cfg.learning_rate}, dtype {cfg.dtype}); {_FIX}")
        else:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            losses.append(step_loss)
        sched.step()
        if losses and (step % cfg.logging_steps == 0 or step == total):
            recent = losses[-cfg.logging_steps:]
            replayed = replay_losses[-cfg.logging_steps:]
            logger.info("score-learn step %d/%d loss %.4f%s (%.1fs)", step, total, sum(recent) / len(recent),
                        f", reasoning replay {sum(replayed) / len(replayed):.4f}" if replayed else "",
                        time.time() - started)
        if dev is not None and (step % cfg.eval_steps == 0 or step == total) and evaluate_now(step):
            logger.info("score-learn: no dev improvement in %d evaluations, stopping at step %d", cfg.patience, step)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        logger.info("score-learn: keeping the best dev checkpoint (step %d, nDCG@10 %.4f)", best[1], best[0])
    model.eval()
    if not losses:
        raise NonFiniteTraining(f"score-learn: every step's loss was non-finite ({len(skipped)} steps); {_FIX}")
    extra: dict[str, Any] = {"steps": len(losses), "final_loss": losses[-1], "seconds": round(time.time() - started, 1),
                             **({"skipped_nonfinite_steps": skipped} if skipped else {})}
    if replay_losses:
        extra["reasoning_replay"] = {"file": cfg.reasoning_file, "weight": cfg.reasoning_weight,
                                     "verdict_share": cfg.reasoning_verdict_share,
                                     "final_loss": round(replay_losses[-1], 4)}
    if dev is not None:
        extra.update({"best_step": best[1], "best_dev_ndcg@10": round(best[0], 4), "dev_history": history})
    save(extra)
    return out
