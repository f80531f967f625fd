"""``sft``: distil teacher explanations + labels into the student (TRL ``SFTTrainer``, completion-only loss).

Each example becomes a prompt-completion pair: the prompt is the exact text the reranker sends (chat
template + ``"Explanation:"`` or ``"Relevance:"``), the completion is ``" <explanation>\\nRelevance: <label>"``
(reasoning) or ``" <label>"`` (direct). Only completion tokens carry loss. LoRA/QLoRA optional.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank._deps import require

from .config import ConfigError, LoraFields, ModelFields, _h
from .data import read_examples, sft_rows
from .modeling import load_tokenizer, load_trainable, write_meta

__all__ = ["SFTRunConfig", "run_sft", "torch_dtype"]

logger = logging.getLogger(__name__)

trl = require("trl", "train", purpose="reasonrank-train sft")


def torch_dtype(cfg: Any) -> Any:
    """The model dtype implied by a TrainingArguments-like config (bf16/fp16 flags; else float32)."""
    torch = require("torch", "train")
    if getattr(cfg, "bf16", False):
        return torch.bfloat16
    if getattr(cfg, "fp16", False):
        return torch.float16
    return torch.float32


@dataclass
class SFTRunConfig(trl.SFTConfig, ModelFields, LoraFields):
    """TRL's ``SFTConfig`` plus the reasonrank fields (model, data, mode, labels, LoRA)."""

    completion_only_loss: bool | None = _h("Loss on the completion (explanation + label) only.", True)
    report_to: Any = _h("Experiment trackers (TRL/transformers option).", "none")  # noqa: RUF009 (a field factory)

    def __post_init__(self) -> None:
        self._check_model_fields()
        self._check_lora_fields(use_cpu=bool(self.use_cpu))
        if self.output_dir is None:
            raise ConfigError("output_dir is not set; set `output_dir:` for the trained model")
        if self.completion_only_loss is False:
            logger.warning("completion_only_loss is off: the prompt (query + document) also carries loss")
        if self.packing:
            raise ConfigError("packing mixes examples in one sequence; set packing: false for reranker SFT")
        super().__post_init__()


def run_sft(cfg: SFTRunConfig) -> Path:
    """Train and save the model (or adapter) + tokenizer + ``reasonrank.json`` in ``cfg.output_dir``."""
    datasets = require("datasets", "train")
    tok = load_tokenizer(cfg.model or "")
    examples = read_examples(cfg.train_file or "", labels=cfg.label_scale, clip_labels=cfg.clip_labels,
                             require_explanations=cfg.mode == "reasoning", max_examples=cfg.max_examples)
    rows = sft_rows(tok, examples, mode=cfg.mode, labels=cfg.label_scale, max_doc_tokens=cfg.max_doc_tokens)
    logger.info("sft: %d examples (%s mode) from %s", len(rows), cfg.mode, cfg.train_file)
    model, peft_cfg = load_trainable(cfg, dtype=torch_dtype(cfg))
    trainer = trl.SFTTrainer(model=model, args=cfg, train_dataset=datasets.Dataset.from_list(rows),
                             processing_class=tok, peft_config=peft_cfg)
    trainer.train()
    out = Path(cfg.output_dir or "")
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    write_meta(out, stage="sft", mode=cfg.mode, label_scale=cfg.label_scale, source_model=cfg.model or "",
               extra={"examples": len(rows), "steps": trainer.state.global_step, "lora": cfg.use_lora})
    return out
