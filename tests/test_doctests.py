"""The core's docstring examples run as tests (modules that import optional extras are skipped without them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import reasonrank

MODULES = sorted(m.name for m in pkgutil.walk_packages(reasonrank.__path__, "reasonrank."))


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # e.g. reasonrank.serve.app without the serve extra, backends.vllm without vLLM
        pytest.skip(f"{name}: {exc}")
    res = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{name}: {res.failed} of {res.attempted} docstring examples failed"
