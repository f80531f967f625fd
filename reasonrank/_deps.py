"""Optional-dependency helper: one place that turns a missing import into an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependencyError", "require"]


class MissingDependencyError(ImportError):
    """Raised when an optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    Args:
        module: Dotted module name, e.g. ``"transformers"``.
        extra: The ``reasonrank`` extra that installs it, e.g. ``"transformers"``.
        purpose: Optional words on what needs it, used in the message.

    Example:
        >>> require("json", "dev").__name__
        'json'
        >>> require("no_such_module_xyz", "vllm")
        Traceback (most recent call last):
        ...
        reasonrank._deps.MissingDependencyError: ... pip install "reasonrank[vllm]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"The optional dependency '{module.split('.')[0]}' is needed{what} but could not be imported "
            f"({exc}). Install it with: pip install \"reasonrank[{extra}]\""
        ) from exc
