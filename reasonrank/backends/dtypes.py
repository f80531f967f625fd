"""Dtype names: one parser for ``dtype=`` options given as a name (``"bfloat16"``) or a torch dtype.

``None`` and ``"auto"`` mean "the caller's default"; each caller keeps its own device-specific default
(the transformers backend: bf16 on GPUs that support it, ...; vLLM: its own choice, but fp32 on CPUs without
native bf16, :func:`cpu_has_bf16`; training: fp32 master weights).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

__all__ = ["cpu_has_bf16", "dtype_name", "resolve_dtype"]


def dtype_name(dtype: Any, *, allowed: Collection[str] | None = None, where: str = "") -> str | None:
    """The name of a dtype given by name or as a torch dtype; None for ``None`` / ``"auto"``.

    Args:
        dtype: ``"bfloat16"``, ``"torch.bfloat16"``, ``torch.bfloat16``, ``"auto"`` or None.
        allowed: The names accepted (any name when None).
        where: Names the caller in the error, e.g. ``" for the vllm backend"``.

    Raises:
        ValueError: the name is not in ``allowed``.

    Example:
        >>> dtype_name("torch.bfloat16"), dtype_name("auto"), dtype_name(None)
        ('bfloat16', None, None)
    """
    if dtype is None or dtype == "auto":
        return None
    name = str(dtype).removeprefix("torch.")
    if allowed is not None and name not in allowed:
        raise ValueError(f"unknown dtype {dtype!r}{where}; use one of {sorted(allowed)}")
    return name


def resolve_dtype(dtype: Any, torch: Any) -> Any:
    """The torch dtype of ``dtype`` (a name or a torch dtype); None for ``None`` / ``"auto"``.

    Raises:
        ValueError: a name that is not a torch dtype.

    Example:
        >>> import torch
        >>> resolve_dtype("bfloat16", torch), resolve_dtype(torch.float16, torch), resolve_dtype("auto", torch)
        (torch.bfloat16, torch.float16, None)
    """
    if not isinstance(dtype, str):
        return dtype  # None, or already a torch dtype
    name = dtype_name(dtype)
    if name is None:
        return None
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'bfloat16', 'float16' or 'float32'")
    return value


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16): bf16 matmuls there run about
    twice as fast as fp32; elsewhere bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False
