"""What the framework adapters (LlamaIndex, LangChain, Haystack) share: their metadata and their translation steps.

The adapters only translate: each copies its input item, sets the framework's score field, and adds
:func:`result_metadata` under the keys of :data:`METADATA_KEYS` (plus :data:`EMPTY_KEY` on an item without
text), defined here once for all of them. The steps every adapter takes are here too:

* :func:`instance_settings`: the ``model``/``backend``/``mode`` an adapter reports when it is built around a
  ready :class:`~reasonrank.ReasoningReranker` (``reranker=...``), and the error on a conflicting one;
* :data:`MODES` and :func:`check_backend`: the valid choices, checked when an adapter is built;
* :func:`deepcopy_memo`: a copy of an adapter shares its loaded reranker instead of copying the model;
* :func:`judged_texts` and :func:`with_empty_last`: the core rejects a document without text, while the
  adapters pass it over and rank it last, with score 0, instead of failing the whole query.

Example:
    >>> from reasonrank.testing import ScriptedBackend
    >>> reranker = ReasoningReranker(backend=ScriptedBackend(), mode="direct")
    >>> texts = ["bm25 ranks documents", "  ", "cats sit on mats"]           # an adapter's items, in input order
    >>> results = reranker.rank("what is bm25", judged_texts(texts), top_k=2)  # the model sees texts 0 and 2
    >>> ranked = with_empty_last(results, texts, top_k=None)                  # indices into texts; empty last
    >>> sorted(r.index for r in ranked[:2]), ranked[2].index, ranked[2].score, result_metadata(ranked[2])[EMPTY_KEY]
    ([0, 2], 1, 0.0, True)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, get_args

from .backends import available_backends
from .reranker import Mode, ReasoningReranker
from .schema import RerankResult

__all__ = ["METADATA_KEYS", "LABEL_KEY", "EXPLANATION_KEY", "PARSE_OK_KEY", "EMPTY_KEY", "MODES", "SETTINGS",
           "result_metadata", "instance_settings", "check_backend", "deepcopy_memo", "judged_texts", "with_empty_last"]

LABEL_KEY = "reasonrank_label"
"""The graded label (int)."""
EXPLANATION_KEY = "reasonrank_explanation"
"""The model's relevance explanation (str in reasoning mode, else None)."""
PARSE_OK_KEY = "reasonrank_parse_ok"
"""False when the model output could not be parsed and the label came from the fallback (bool)."""
EMPTY_KEY = "reasonrank_empty"
"""True on an item without text: not judged, ranked last with score 0 and label 0. Written only on such items,
so it is not one of :data:`METADATA_KEYS`."""

METADATA_KEYS: tuple[str, ...] = (LABEL_KEY, EXPLANATION_KEY, PARSE_OK_KEY)
"""Every metadata key the adapters write on every item, in order."""

MODES: tuple[str, ...] = get_args(Mode)
"""The judging modes of :class:`~reasonrank.ReasoningReranker` (``mode=``), in order."""

SETTINGS: tuple[str, ...] = ("model", "backend", "mode")
"""The settings of a ready reranker that :func:`instance_settings` reports."""


def _is_empty(text: str) -> bool:
    return not text.strip()


def result_metadata(result: RerankResult) -> dict[str, Any]:
    """The metadata of :data:`METADATA_KEYS` for one result, as plain Python values, plus ``EMPTY_KEY: True``
    for an item without text (one :func:`with_empty_last` appended; the core never judges such an item).

    Example:
        >>> r = RerankResult(index=0, id="d1", text="...", score=0.5, label=1, label_probs=(0.5, 0.5),
        ...                  explanation="why")
        >>> result_metadata(r)
        {'reasonrank_label': 1, 'reasonrank_explanation': 'why', 'reasonrank_parse_ok': True}
        >>> result_metadata(replace(r, text=" ", label=0, explanation=None))
        {'reasonrank_label': 0, 'reasonrank_explanation': None, 'reasonrank_parse_ok': True, 'reasonrank_empty': True}
    """
    meta: dict[str, Any] = {LABEL_KEY: int(result.label), EXPLANATION_KEY: result.explanation,
                            PARSE_OK_KEY: bool(result.parse_ok)}
    if _is_empty(result.text):
        meta[EMPTY_KEY] = True
    return meta


def instance_settings(reranker: ReasoningReranker, **given: str | None) -> dict[str, str]:
    """The settings named in ``given`` (some of :data:`SETTINGS`) of a ready reranker, checked against ``given``.

    An adapter built around a ready reranker (``reranker=...``) reports the reranker's own settings; a setting
    given explicitly too (not None) must agree with it.

    Args:
        reranker: The ready reranker.
        **given: The settings the adapter was given, by name (``model``, ``backend``, ``mode``); None: not given.

    Returns:
        The reranker's own value of each setting named in ``given``: ``model`` is the backend's model name (else
        its description), ``backend`` its registered name, ``mode`` the reranker's mode.

    Raises:
        ValueError: a given value differs from the reranker's; the message names both and the fix.
        TypeError: a name in ``given`` is not one of :data:`SETTINGS`.

    Example:
        >>> from reasonrank.testing import ScriptedBackend
        >>> rr = ReasoningReranker(backend=ScriptedBackend(), mode="direct")
        >>> instance_settings(rr, model=None, mode="direct")
        {'model': 'scripted', 'mode': 'direct'}
        >>> instance_settings(rr, mode="reasoning")
        Traceback (most recent call last):
        ...
        ValueError: mode='reasoning' conflicts with the given reranker, whose mode is 'direct': drop mode= ...
    """
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise TypeError(f"instance_settings() got unknown settings {unknown}; choose from {list(SETTINGS)}")
    backend = reranker.backend
    actual = {"model": getattr(backend, "model_name", None) or backend.describe(), "backend": backend.name,
              "mode": reranker.mode}
    for key, value in given.items():
        if value is not None and value != actual[key]:
            raise ValueError(f"{key}={value!r} conflicts with the given reranker, whose {key} is {actual[key]!r}: "
                             f"drop {key}= (the reranker's own is used) or pass a reranker built with "
                             f"{key}={value!r}")
    return {key: actual[key] for key in given}


def check_backend(name: str) -> None:
    """Check that ``name`` is a registered backend (:func:`reasonrank.available_backends`).

    Raises:
        ValueError: it is not; the message lists the registered ones and how to register another.

    Example:
        >>> check_backend("transformers")
        >>> check_backend("torch")
        Traceback (most recent call last):
        ...
        ValueError: unknown backend 'torch'; choose one of [...] or register one with reasonrank.register_backend ...
    """
    if name not in available_backends():
        raise ValueError(f"unknown backend {name!r}; choose one of {available_backends()} or register one "
                         "with reasonrank.register_backend before building the component")


def deepcopy_memo(memo: dict[int, Any] | None, *, reranker: object | None, lock: object) -> dict[int, Any]:
    """The ``memo`` for ``copy.deepcopy`` of an adapter holding a ``reranker`` and a ``lock``.

    Under it, the copy shares the reranker by reference (a loaded model is reused, neither reloaded nor
    duplicated in memory; a copy made before the first use loads its own on first use) and gets a new lock (a
    lock cannot be copied). Use it in the adapter's ``__deepcopy__``:
    ``return super().__deepcopy__(deepcopy_memo(memo, reranker=self._reranker, lock=self._lock))``.

    Example:
        >>> import copy
        >>> a = {"reranker": object(), "lock": threading.Lock(), "top_k": [3]}
        >>> clone = copy.deepcopy(a, deepcopy_memo(None, reranker=a["reranker"], lock=a["lock"]))
        >>> clone["reranker"] is a["reranker"], clone["lock"] is a["lock"], clone["top_k"] is a["top_k"]
        (True, False, False)
    """
    memo = {} if memo is None else memo
    memo[id(lock)] = threading.Lock()
    if reranker is not None:
        memo[id(reranker)] = reranker
    return memo


def _judged_positions(texts: Sequence[str]) -> list[int]:
    return [i for i, t in enumerate(texts) if not _is_empty(t)]


def judged_texts(texts: Sequence[str]) -> list[str]:
    """The texts the model can judge, in order: those not empty or whitespace only.

    Rank these, then pass the ranking to :func:`with_empty_last` with all ``texts``.

    Example:
        >>> judged_texts(["a", "", " \\n", "b"])
        ['a', 'b']
    """
    return [texts[i] for i in _judged_positions(texts)]


def with_empty_last(results: Sequence[RerankResult], texts: Sequence[str], top_k: int | None) -> list[RerankResult]:
    """A ranking of all ``texts``: the ranking of the judged ones, then the empty ones, as far as ``top_k`` allows.

    Args:
        results: The reranker's ranking of :func:`judged_texts` of ``texts``.
        texts: The texts of the adapter's input items, in input order.
        top_k: How many results in all; None: all.

    Returns:
        ``results`` with each ``index`` mapped back to its position in ``texts``, then one result per empty text
        (input order; score 0, label 0, no label probabilities; ranks after the judged ones) while fewer than
        ``top_k`` results are listed: empty items are the lowest-ranked.

    Example:
        >>> texts = ["", "relevant"]
        >>> judged = [RerankResult(index=0, id=None, text="relevant", score=0.8, label=1, label_probs=(), rank=1)]
        >>> [(r.index, r.score, r.label, r.rank) for r in with_empty_last(judged, texts, top_k=2)]
        [(1, 0.8, 1, 1), (0, 0.0, 0, 2)]
        >>> [r.index for r in with_empty_last(judged, texts, top_k=1)]
        [1]
    """
    judged = _judged_positions(texts)
    out = [replace(r, index=judged[r.index]) for r in results]
    empty = [i for i, t in enumerate(texts) if _is_empty(t)]
    if top_k is not None:
        empty = empty[: max(0, top_k - len(out))]
    return out + [RerankResult(index=i, id=None, text=texts[i], score=0.0, label=0, label_probs=(),
                               rank=len(out) + k + 1) for k, i in enumerate(empty)]
