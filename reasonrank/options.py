"""``KEY=VALUE`` command-line options (``--backend-opt``, ``reasonrank-train --set``): one parser.

Values are JSON when they parse as JSON (``2``, ``true``, ``{"x": 1}``), else the text itself; a caller may
pass its own value parser (the training configs read values as YAML).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["OptionError", "json_or_text", "parse_option", "parse_options"]


class OptionError(ValueError):
    """An option is not ``KEY=VALUE``.

    Attributes:
        item: The option as given.
    """

    def __init__(self, message: str, *, item: str) -> None:
        super().__init__(message)
        self.item = item


def json_or_text(text: str) -> Any:
    """The JSON value of ``text``, or ``text`` itself when it is not JSON.

    Example:
        >>> json_or_text("2"), json_or_text('{"x": 1}'), json_or_text("http://h:1/v1")
        (2, {'x': 1}, 'http://h:1/v1')
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_option(item: str, *, flag: str = "--backend-opt", example: str = "base_url=http://...",
                 value: Callable[[str], Any] = json_or_text) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, value(VALUE))``, split at the first ``=``; spaces around KEY are dropped.

    Args:
        item: One option.
        flag: / example: The command-line flag and an example option, used in the error message.
        value: Parses the text after ``=`` (default :func:`json_or_text`).

    Raises:
        OptionError: no ``=``, or an empty key.

    Example:
        >>> parse_option("engine_kwargs={\\"x\\": 1}")
        ('engine_kwargs', {'x': 1})
        >>> parse_option("nokey")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        reasonrank.options.OptionError: --backend-opt takes KEY=VALUE, got 'nokey'; e.g. --backend-opt ...
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"{flag} takes KEY=VALUE, got {item!r}; e.g. {flag} {example}", item=item)
    return key.strip(), value(raw)


def parse_options(items: Iterable[str], *, flag: str = "--backend-opt", example: str = "base_url=http://...",
                  value: Callable[[str], Any] = json_or_text) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> ``{KEY: value(VALUE)}`` (:func:`parse_option`); a repeated KEY: last wins.

    Example:
        >>> parse_options(["timeout=30", "base_url=http://127.0.0.1:8000/v1"])
        {'timeout': 30, 'base_url': 'http://127.0.0.1:8000/v1'}
    """
    return dict(parse_option(item, flag=flag, example=example, value=value) for item in items)
