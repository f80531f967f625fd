"""Loading and saving models for training: aliases, LoRA adapters (merged on load), run metadata."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasonrank._deps import require
from reasonrank.models import META_FILE, cache_dir, convert_gguf, read_model_meta, resolve_model

__all__ = [
    "META_FILE",
    "TINY_RANDOM",
    "is_adapter_dir",
    "load_model",
    "load_tokenizer",
    "lora_config",
    "read_meta",
    "resolve_train_model",
    "write_meta",
]

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
"""Alias of a random tiny Llama built locally by :func:`reasonrank.testing.build_tiny_model` (CPU smoke runs)."""


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def resolve_train_model(model: str) -> str:
    """Expand aliases to a local path or hub id: ``tiny-random`` (built once in the reasonrank cache),
    ``smollm2-local`` (converted once to safetensors), ``.gguf`` files (converted); others pass through."""
    if model == TINY_RANDOM:
        from reasonrank.testing import build_tiny_model

        return str(build_tiny_model(cache_dir() / "tiny-random"))
    path = resolve_model(model)
    if path.endswith(".gguf"):
        return str(convert_gguf(path))
    return path


def load_tokenizer(model: str) -> Any:
    tf = require("transformers", "train")
    path = resolve_train_model(model)
    tok = tf.AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _adapter_base(path: Path) -> str:
    cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}/adapter_config.json names no base model; set `base_model:` explicitly")
    return base


def load_model(model: str, *, dtype: Any = None, load_in_4bit: bool = False, base_model: str | None = None,
               for_training: bool = True) -> Any:
    """Load a causal LM; a LoRA adapter directory is loaded onto its base model and merged.

    Args:
        model: Hub id, local directory, adapter directory, or an alias (see :func:`resolve_train_model`).
        dtype: torch dtype (None: float32).
        load_in_4bit: QLoRA base in 4-bit NF4 (CUDA + bitsandbytes).
        base_model: Base of an adapter (default: recorded in the adapter config).
        for_training: Enable input grads when loading 4-bit (k-bit training preparation).
    """
    torch = require("torch", "train")
    tf = require("transformers", "train")
    dtype = dtype or torch.float32
    path = resolve_train_model(model)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        require("bitsandbytes", "train", purpose="4-bit QLoRA (pip install bitsandbytes)")
        kwargs["quantization_config"] = tf.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    if is_adapter_dir(path):
        if load_in_4bit:
            raise ValueError(f"{path} is a LoRA adapter; export it (merge) before training a 4-bit model on it")
        peft = require("peft", "train")
        base = resolve_train_model(base_model or _adapter_base(Path(path)))
        logger.info("loading adapter %s onto %s and merging", path, base)
        net = tf.AutoModelForCausalLM.from_pretrained(base, **kwargs)
        net = peft.PeftModel.from_pretrained(net, path).merge_and_unload()
    else:
        net = tf.AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if load_in_4bit and for_training:
        net = require("peft", "train").prepare_model_for_kbit_training(net)
    return net


def lora_config(cfg: Any) -> Any:
    """A ``peft.LoraConfig`` from a config with :class:`~reasonrank_train.config.LoraFields`, or None."""
    if not getattr(cfg, "use_lora", False):
        return None
    peft = require("peft", "train", purpose="LoRA adapters")
    return peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``reasonrank.json`` of a model directory ({} if none)."""
    return read_model_meta(path)


def write_meta(path: str | Path, *, stage: str, mode: str, label_scale: Any, source_model: str,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Record mode, label scale, template and the stage history next to a saved model."""
    from reasonrank.templates import get_template

    prev = read_meta(source_model) if Path(source_model).is_dir() else {}
    tpl = get_template(None, mode)  # type: ignore[arg-type]
    meta = {"mode": mode, "label_scale": list(label_scale), "template": tpl.name, "marker": tpl.marker,
            "base_model": prev.get("base_model", source_model),
            "stages": [*prev.get("stages", []), {"stage": stage, "from": source_model, **dict(extra or {})}]}
    out = Path(path) / META_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out
