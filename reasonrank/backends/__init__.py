"""Backend registry: backends are chosen by explicit name, never guessed from a model name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import (
    Backend,
    GenerateRequest,
    Generation,
    LabelReply,
    LabelRequest,
    LabelScores,
    LabelSpec,
    LocateLabel,
    Prompt,
)

__all__ = ["Backend", "GenerateRequest", "Generation", "LabelReply", "LabelRequest", "LabelScores", "LabelSpec",
           "LocateLabel", "Prompt", "register_backend", "create_backend", "available_backends"]

# name -> "module:Class" (lazy, so importing reasonrank never imports torch/vllm/httpx)
_REGISTRY: dict[str, str | Callable[..., Backend]] = {
    "transformers": "reasonrank.backends.hf:TransformersBackend",
    "vllm": "reasonrank.backends.vllm:VLLMBackend",
    "openai": "reasonrank.backends.openai:OpenAIBackend",
}


def register_backend(name: str, factory: str | Callable[..., Backend]) -> None:
    """Register a backend under ``name``: a ``"module:Class"`` string or a callable returning a Backend."""
    if not name or not isinstance(name, str):
        raise ValueError("backend name must be a non-empty string")
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def create_backend(name: str, model: str, **options: Any) -> Backend:
    """Instantiate the backend registered as ``name`` for ``model``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {available_backends()} "
                         "or register one with reasonrank.backends.register_backend") from None
    if isinstance(factory, str):
        mod, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(mod), attr)
    backend = factory(model, **options)
    if not isinstance(backend, Backend):
        raise TypeError(f"backend factory for {name!r} returned {type(backend).__name__}, not a Backend")
    return backend
