"""Result and input types: frozen dataclasses, the explanation is part of the product."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Document", "DocInput", "RerankResult", "RerankStats", "to_documents"]


@dataclass(frozen=True)
class Document:
    """A candidate document.

    Attributes:
        text: The body text that is judged.
        id: Optional caller identifier, carried through to the result.
        title: Optional title, shown to the model above the text.
        metadata: Arbitrary caller data, carried through untouched.
        first_stage_score: The retriever's score of this candidate (optional), used by score fusion
            (``ReasoningReranker(fusion_weight=...)``) and carried through to the result.
    """

    text: str
    id: str | None = None
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    first_stage_score: float | None = None

    @property
    def prompt_text(self) -> str:
        """The text shown to the model: the title (if any) on its own line, then the body."""
        return f"{self.title}\n{self.text}" if self.title else self.text


DocInput = str | Document | Mapping[str, Any]

_TEXT_KEYS = ("text", "content", "page_content", "contents")
_ID_KEYS = ("id", "_id", "doc_id", "docid")


def to_documents(docs: object) -> list[Document]:
    """Normalise strings, dicts (``text``/``content``, ``id``/``_id``, ``title``, ``metadata``, a first-stage
    ``score``/``first_stage_score``) and :class:`Document` objects into a list of :class:`Document`.

    Raises:
        TypeError: ``docs`` is not a list/tuple, or an element is None / of an unsupported type /
            a mapping without a text field; the message names the index.

    Example:
        >>> [d.id for d in to_documents(["a", {"_id": 7, "text": "b"}])]
        [None, '7']
    """
    if isinstance(docs, (str, bytes)) or isinstance(docs, Mapping):
        raise TypeError("docs must be a sequence of documents (a list of str, dict or Document), not a single "
                        f"{type(docs).__name__}; wrap it in a list: [doc]")
    try:
        items = list(docs)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"docs must be a list of str, dict or Document, got {type(docs).__name__}") from None
    out: list[Document] = []
    for i, d in enumerate(items):
        if isinstance(d, Document):
            doc = d
        elif isinstance(d, str):
            doc = Document(text=d)
        elif isinstance(d, Mapping):
            key = next((k for k in _TEXT_KEYS if k in d), None)
            if key is None:
                raise TypeError(f"docs[{i}] is a mapping without a text field; give it one of the keys "
                                f"{', '.join(_TEXT_KEYS)}")
            text = d[key]
            if not isinstance(text, str):
                raise TypeError(f"docs[{i}][{key!r}] must be a str, got {type(text).__name__}")
            id_key = next((k for k in _ID_KEYS if k in d), None)
            title = d.get("title")
            meta = d.get("metadata") or {}
            if not isinstance(meta, Mapping):
                raise TypeError(f"docs[{i}]['metadata'] must be a mapping, got {type(meta).__name__}")
            fs = d.get("first_stage_score", d.get("score"))
            if fs is not None and (isinstance(fs, bool) or not isinstance(fs, (int, float))):
                raise TypeError(f"docs[{i}] first-stage score must be a number, got {type(fs).__name__}")
            doc = Document(text=text, id=None if id_key is None or d[id_key] is None else str(d[id_key]),
                           title=str(title) if title else None, metadata=dict(meta),
                           first_stage_score=None if fs is None else float(fs))
        elif d is None:
            raise TypeError(f"docs[{i}] is None; pass a string, a dict with 'text', or a Document "
                            "(filter out missing documents before reranking)")
        else:
            raise TypeError(f"docs[{i}] has unsupported type {type(d).__name__}; pass a string, a dict with "
                            "'text', or a Document")
        if not isinstance(doc.text, str):
            raise TypeError(f"docs[{i}].text must be a str, got {type(doc.text).__name__}")
        out.append(doc)
    return out


@dataclass(frozen=True)
class RerankResult:
    """One judged document.

    Attributes:
        index: Position of the document in the input list.
        id: The document's id, if it had one.
        text: The document's text, as given (never the truncated copy).
        score: Relevance in [0, 1]: the expected label under the label-token probabilities, divided by
            the top label. Comparable across documents and queries of the same model.
        label: The graded label: parsed from the explanation's verdict (reasoning mode) or the most
            probable label (direct mode, and reasoning fallbacks).
        label_probs: Probability of each label of the scale, in scale order.
        explanation: The model's relevance explanation (reasoning mode), else None.
        raw_output: The model's whole generated output (reasoning mode), else None.
        parse_ok: False when the output could not be parsed and the label came from the fallback.
        truncated: True when the document was cut to the token budget before judging.
        rank: 1-based position in a ranking (set by ``rank``), else None.
        metadata: The document's metadata, carried through.
        error: Why the backend failed on this document (backends with ``on_error="report"``), else None.
            Such a result has score 0, all-zero ``label_probs`` and ranks after every judged document.
        model_score: The reranker's own score (equal to ``score`` unless score fusion is on): the label score,
            mixed with the query likelihood when ``likelihood_weight`` is on.
        first_stage_score: The document's first-stage score, when it had one.
        query_logprob: With ``likelihood_weight``: the mean log-probability per token of the query given the
            document (the template's ``likelihood`` prompt), else None.
    """

    index: int
    id: str | None
    text: str
    score: float
    label: int
    label_probs: tuple[float, ...]
    explanation: str | None = None
    raw_output: str | None = None
    parse_ok: bool = True
    truncated: bool = False
    rank: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None
    model_score: float | None = None
    first_stage_score: float | None = None
    query_logprob: float | None = None


@dataclass
class RerankStats:
    """Running counters of a reranker, reported in logs and readable by callers."""

    documents: int = 0
    truncated: int = 0
    parse_failures: int = 0
    generated_tokens: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
