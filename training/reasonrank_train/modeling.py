"""Loading and saving models for training: aliases, LoRA adapters (merged on load), run metadata."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasonrank._deps import require
from reasonrank.models import (
    META_FILE,
    cache_dir,
    convert_gguf,
    has_tokenizer,
    is_adapter_dir,
    read_model_meta,
    resolve_model,
)

__all__ = [
    "META_FILE",
    "TINY_RANDOM",
    "is_adapter_dir",
    "load_model",
    "load_trainable",
    "load_tokenizer",
    "lora_config",
    "read_meta",
    "resolve_train_model",
    "write_meta",
]

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"
"""Alias of a random tiny Llama built locally by :func:`reasonrank.testing.build_tiny_model` (CPU smoke runs)."""


def resolve_train_model(model: str) -> str:
    """Expand aliases to a local path or hub id: ``tiny-random`` (built once in the reasonrank cache),
    ``smollm2-local`` (converted once to safetensors), ``.gguf`` files (converted); others pass through."""
    if model == TINY_RANDOM:
        from reasonrank.testing import build_tiny_model

        return str(build_tiny_model(cache_dir() / "tiny-random"))
    if is_adapter_dir(model):  # stages load adapters themselves (merged, or continued: load_trainable)
        return model
    path = resolve_model(model)
    if path.endswith(".gguf"):
        return str(convert_gguf(path))
    return path


def load_tokenizer(model: str) -> Any:
    tf = require("transformers", "train")
    path = resolve_train_model(model)
    if is_adapter_dir(path) and not has_tokenizer(path):  # an exported adapter (e.g. the shipped one)
        path = resolve_train_model(_adapter_base(Path(path)))     # ships without one: its base's
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


def load_trainable(cfg: Any, *, dtype: Any) -> tuple[Any, Any]:
    """The model a stage trains and the ``peft_config`` to hand its trainer.

    With ``use_lora`` and a LoRA adapter directory as ``model`` (the previous stage's output), that adapter is
    loaded trainable and trained further, so a recipe carries one adapter through every stage and ships it
    as one small delta over the base. Otherwise the model is loaded (an adapter merged) and, with
    ``use_lora``, gets a fresh adapter from :func:`lora_config`.
    """
    path = resolve_train_model(cfg.model or "")
    if getattr(cfg, "use_lora", False) and is_adapter_dir(path):
        if cfg.load_in_4bit:
            raise ValueError(f"{path} is a LoRA adapter; continuing it on a 4-bit base is not supported: set "
                             "load_in_4bit: false")
        peft = require("peft", "train")
        tf = require("transformers", "train")
        base = resolve_train_model(_adapter_base(Path(path)))
        logger.info("continuing LoRA adapter %s on %s (lora_r and friends come from the adapter)", path, base)
        net = tf.AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        return peft.PeftModel.from_pretrained(net, path, is_trainable=True), None
    net = load_model(cfg.model or "", dtype=dtype, load_in_4bit=cfg.load_in_4bit)
    return net, lora_config(cfg, model=net)


def lora_config(cfg: Any, *, model: Any = None) -> Any:
    """A ``peft.LoraConfig`` from a config with :class:`~reasonrank_train.config.LoraFields`, or None.

    ``lora_top_layers`` needs the ``model`` (its layer count and linear module names)."""
    if not getattr(cfg, "use_lora", False):
        return None
    peft = require("peft", "train", purpose="LoRA adapters")
    layers, targets = None, cfg.lora_target_modules
    top = getattr(cfg, "lora_top_layers", None)
    if top is not None:
        n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
        if not n:
            raise ValueError("lora_top_layers needs a model with config.num_hidden_layers; unset lora_top_layers")
        layers = list(range(max(0, n - top), n))
        if targets == "all-linear":  # peft wants names with layers_to_transform: the layers' linear modules
            torch = require("torch", "train")
            targets = sorted({name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
                              if isinstance(mod, torch.nn.Linear) and ".layers." in name})
    return peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")


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
    if is_adapter_dir(path):  # name the base as the recipe did (an alias), not this machine's cache path
        adapter = Path(path) / "adapter_config.json"
        acfg = json.loads(adapter.read_text(encoding="utf-8"))
        acfg["base_model_name_or_path"] = meta["base_model"]
        adapter.write_text(json.dumps(acfg, indent=2), encoding="utf-8")
    return out
