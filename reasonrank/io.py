"""Reading JSON Lines files: one reader, with errors that name ``file:line``.

Used by the CLI's documents file, the evaluation loaders, the training data and the benchmark caches.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["JsonlError", "parse_jsonl", "read_jsonl"]

logger = logging.getLogger(__name__)


class JsonlError(ValueError):
    """A line of a JSONL file is not what it must be; the message names ``file:line``.

    Attributes:
        source: The file (or stream name, e.g. ``<stdin>``) as given.
        line_no: The 1-based line number.
        reason: What is wrong, without the location (e.g. the JSON decoder's message).
    """

    def __init__(self, message: str, *, source: str | Path, line_no: int, reason: str) -> None:
        super().__init__(message)
        self.source, self.line_no, self.reason = source, line_no, reason


def parse_jsonl(lines: Iterable[str], source: str | Path, *, objects_only: bool = True,
                skip_partial_last: bool = False, what: str = "one JSON object") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of ``lines`` (numbered from 1; blank lines skipped).

    Args:
        lines: The lines, with their ``"\\n"`` endings (an open text file, ``io.StringIO``, ...).
        source: Names the input in errors and warnings (a path, ``"<stdin>"``).
        objects_only: Every value must be a JSON object (else :class:`JsonlError`).
        skip_partial_last: A final line without its newline that is not valid JSON (the tail of an
            interrupted write) is skipped with a warning instead of raising.
        what: Ends the invalid-JSON message: ``each line must be <what>``.

    Raises:
        JsonlError: a line is not valid JSON, or (``objects_only``) not an object.

    Example:
        >>> list(parse_jsonl(['{"a": 1}\\n', '\\n', '{"b": 2}\\n'], "x.jsonl"))
        [(1, {'a': 1}), (3, {'b': 2})]
        >>> list(parse_jsonl(['{"a": 1}\\n', '{"b"'], "x.jsonl", skip_partial_last=True))
        [(1, {'a': 1})]
        >>> list(parse_jsonl(["[1]\\n"], "x.jsonl"))
        Traceback (most recent call last):
        ...
        reasonrank.io.JsonlError: x.jsonl:1 must be a JSON object, got list
    """
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_partial_last and not line.endswith("\n"):  # only the last line can lack its newline
                logger.warning("%s:%d is incomplete (interrupted write) and is ignored", source, n)
                continue
            raise JsonlError(f"{source}:{n} is not valid JSON ({exc.msg}); each line must be {what}",
                             source=source, line_no=n, reason=exc.msg) from exc
        if objects_only and not isinstance(value, dict):
            raise JsonlError(f"{source}:{n} must be a JSON object, got {type(value).__name__}", source=source,
                             line_no=n, reason=f"not a JSON object but {type(value).__name__}")
        yield n, value


def read_jsonl(path: str | Path, *, objects_only: bool = True, skip_partial_last: bool = False,
               what: str = "one JSON object") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a UTF-8 JSONL file (``.gz`` files decompressed).

    Options as in :func:`parse_jsonl`; errors name ``path`` as given.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        JsonlError: a malformed line.
    """
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        yield from parse_jsonl(fh, path, objects_only=objects_only, skip_partial_last=skip_partial_last,
                               what=what)
