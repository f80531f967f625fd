"""``grpo``: RL refinement with TRL's ``GRPOTrainer`` and the pure rewards of :mod:`reasonrank_train.rewards`.

Reasoning mode (InteRank refinement): the student writes explanation + verdict; rewards are label
correctness against the teacher/gold label (graded partial credit), format, and an optional length penalty.
Direct mode (ProRank's GRPO prompt warm-up): the completion is the label alone (binary relevance with
``label_scale: [0, 1]`` and ``clip_labels: true`` on graded data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank._deps import require

from .config import ConfigError, LoraFields, ModelFields, _h
from .data import grpo_rows, read_examples
from .modeling import load_tokenizer, load_trainable, write_meta
from .rewards import make_reward_funcs
from .sft import torch_dtype

__all__ = ["GRPORunConfig", "run_grpo"]

logger = logging.getLogger(__name__)

trl = require("trl", "train", purpose="reasonrank-train grpo")


@dataclass
class GRPORunConfig(trl.GRPOConfig, ModelFields, LoraFields):
    """TRL's ``GRPOConfig`` plus reasonrank fields; ``reward_weights`` is set from the three weights below."""

    label_reward_weight: float = _h("Weight of the graded label-correctness reward.", 1.0)
    format_reward_weight: float = _h("Weight of the format reward (explanation, then one verdict).", 0.2)
    length_penalty_weight: float = _h("Weight of the length penalty (0: off).", 0.0)
    length_target: int = _h("Length penalty: tokens allowed before the penalty starts (reaches -1 at 2x).", 128)
    min_explanation_words: int = _h("Format reward: words an explanation needs for full credit.", 3)
    max_completion_length: int | None = _h("Generated tokens per completion; None: 256 (reasoning) or 4 "
                                           "(direct).", None)
    report_to: Any = _h("Experiment trackers (TRL/transformers option).", "none")  # noqa: RUF009 (a field factory)

    def __post_init__(self) -> None:
        self._check_model_fields()
        self._check_lora_fields(use_cpu=bool(self.use_cpu))
        if self.output_dir is None:
            raise ConfigError("output_dir is not set; set `output_dir:` for the trained model")
        if self.reward_weights is not None:
            raise ConfigError("do not set reward_weights; set label_reward_weight, format_reward_weight and "
                              "length_penalty_weight instead")
        weights = [self.label_reward_weight, self.format_reward_weight]
        if self.length_penalty_weight:
            weights.append(self.length_penalty_weight)
        if not any(weights):
            raise ConfigError("all reward weights are 0; set label_reward_weight: 1.0")
        self.reward_weights = weights
        if self.max_completion_length is None:
            self.max_completion_length = 256 if self.mode == "reasoning" else 4
        g = self.num_generations or 8
        if g < 2:
            raise ConfigError(f"num_generations must be >= 2 (GRPO compares a group of completions), got {g}")
        steps = self.steps_per_generation or self.gradient_accumulation_steps
        gen_batch = self.generation_batch_size or self.per_device_train_batch_size * steps
        if gen_batch % g:
            raise ConfigError(f"the generation batch ({gen_batch} = per_device_train_batch_size x "
                              f"steps_per_generation) must be divisible by num_generations ({g}); set "
                              f"per_device_train_batch_size: {g} (or a multiple of it)")
        super().__post_init__()


def run_grpo(cfg: GRPORunConfig) -> Path:
    """Refine the model with GRPO and save it (or its adapter) + tokenizer + ``reasonrank.json``."""
    datasets = require("datasets", "train")
    tok = load_tokenizer(cfg.model or "")
    examples = read_examples(cfg.train_file or "", labels=cfg.label_scale, clip_labels=cfg.clip_labels,
                             max_examples=cfg.max_examples)
    rows = grpo_rows(tok, examples, mode=cfg.mode, labels=cfg.label_scale, max_doc_tokens=cfg.max_doc_tokens)
    logger.info("grpo: %d prompts (%s mode) from %s", len(rows), cfg.mode, cfg.train_file)
    rewards = make_reward_funcs(mode=cfg.mode, labels=cfg.label_scale,
                                length_target=cfg.length_target if cfg.length_penalty_weight else None,
                                min_explanation_words=cfg.min_explanation_words)
    model, peft_cfg = load_trainable(cfg, dtype=torch_dtype(cfg))
    tok.padding_side = "left"
    trainer = trl.GRPOTrainer(model=model, reward_funcs=rewards, args=cfg,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                              peft_config=peft_cfg)
    trainer.train()
    out = Path(cfg.output_dir or "")
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    write_meta(out, stage="grpo", mode=cfg.mode, label_scale=cfg.label_scale, source_model=cfg.model or "",
               extra={"prompts": len(rows), "steps": trainer.state.global_step, "lora": cfg.use_lora,
                      "reward_weights": list(cfg.reward_weights or [])})
    return out
