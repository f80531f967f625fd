"""Local model files made loadable: GGUF files dequantised to safetensors, LoRA adapters merged into their
base, each saved once into the reasonrank cache (:func:`cache_dir`).

Needs ``reasonrank[transformers]`` (``transformers``, ``gguf``, ``peft``, ``torch``), imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ._deps import require
from .metadata import META_FILE

__all__ = ["cache_dir", "gguf_cache_path", "convert_gguf", "merge_adapter"]

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where converted models are cached: ``$REASONRANK_CACHE`` or ``~/.cache/reasonrank``."""
    return Path(os.environ.get("REASONRANK_CACHE") or Path.home() / ".cache" / "reasonrank")


def gguf_cache_path(gguf: Path) -> Path:
    """Cache directory for the safetensors conversion of a GGUF file (keyed by path, size and mtime)."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: str | Path, target: str | Path | None = None, *, trust_remote_code: bool = False) -> Path:
    """Dequantise a ``.gguf`` file with transformers and save it as safetensors + tokenizer (once).

    vLLM, training and fast reloads need safetensors. Returns the directory (the cache entry of
    :func:`gguf_cache_path` unless ``target`` is given); an existing conversion is reused.
    """
    tf = require("transformers", "transformers", purpose="converting GGUF files")
    require("gguf", "transformers", purpose="converting GGUF files")
    torch = require("torch", "transformers", purpose="converting GGUF files")
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} does not exist")
    out = Path(target) if target else gguf_cache_path(gguf)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    logger.info("converting %s to safetensors at %s (once)", gguf.name, out)
    tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, trust_remote_code=trust_remote_code)
    model = tf.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                    trust_remote_code=trust_remote_code)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return _save_to_cache(model, tok, out)


def merge_adapter(adapter: str | Path) -> Path:
    """Merge a LoRA adapter folder into its base model once; return the cached safetensors folder.

    The base is the adapter's ``base_model_name_or_path`` (an alias such as ``smollm2-local``, a hub id or a
    folder). The merged folder carries the adapter's ``reasonrank.json`` and tokenizer. Backends load it like
    any checkpoint (vLLM and transformers alike). Needs ``peft`` (``pip install reasonrank[transformers]``).
    """
    # models.resolve_model merges adapters: a mutual recursion
    from .models import LOCAL_SMOLLM2, has_tokenizer, resolve_model

    adapter = Path(adapter)
    acfg_text = (adapter / "adapter_config.json").read_text(encoding="utf-8")
    weights = sorted(adapter.glob("adapter_model.*"))
    if not weights:
        raise FileNotFoundError(f"{adapter} has adapter_config.json but no adapter_model.safetensors; re-export it")
    digest = hashlib.sha256(acfg_text.encode())
    for w in weights:
        digest.update(w.read_bytes())
    out = cache_dir() / "merged" / f"{adapter.name}-{digest.hexdigest()[:16]}"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    base_name = json.loads(acfg_text).get("base_model_name_or_path")
    if not base_name:
        raise ValueError(f"{adapter}/adapter_config.json names no base_model_name_or_path; set it to the base "
                         f"the adapter was trained on (e.g. {LOCAL_SMOLLM2!r})")
    tf = require("transformers", "transformers", purpose="loading a LoRA adapter")
    peft = require("peft", "transformers", purpose="loading a LoRA adapter")
    torch = require("torch", "transformers", purpose="loading a LoRA adapter")
    base = resolve_model(base_name)
    if base.endswith(".gguf"):
        base = str(convert_gguf(base))
    logger.info("merging adapter %s into %s at %s (once)", adapter, base, out)
    net = tf.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    net = peft.PeftModel.from_pretrained(net, str(adapter)).merge_and_unload()
    tok_src = adapter if has_tokenizer(adapter) else Path(base)
    tok = tf.AutoTokenizer.from_pretrained(str(tok_src))
    meta = adapter / META_FILE
    return _save_to_cache(net, tok, out, extra={META_FILE: meta.read_bytes()} if meta.is_file() else None)


def _save_to_cache(model: Any, tok: Any, out: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    """Save a model + tokenizer (+ extra files) as safetensors into the cache entry ``out``, atomically: a
    per-process staging folder is renamed into place; when another process got there first, theirs stays."""
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    for name, data in (extra or {}).items():
        (tmp / name).write_bytes(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.replace(out)
    except OSError:  # another process won the race: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out
