"""Wire formats of the rerank service: request models (Cohere/Jina and TEI), input limits, errors.

Every rejection is an :class:`ApiError` whose message names the offending field and the fix, e.g.
``documents[3] is empty; remove empty documents before reranking``.
"""

from __future__ import annotations

import json
from typing import Any

from .._deps import require
from ..schema import Document, to_documents
from .config import ServeConfig

require("pydantic", "serve", purpose="reasonrank serve")

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError  # noqa: E402

__all__ = ["ApiError", "CohereRerankRequest", "TEIRerankRequest", "check_query", "cohere_documents", "decode_body",
           "parse_body", "tei_documents", "validate"]

_TEXT_KEYS = ("text", "content", "page_content", "contents")

_HINTS = {
    "query": "send the query as a non-empty string",
    "documents": "send a list of strings or of objects with a 'text' field",
    "texts": "send a list of strings",
    "top_n": "send a positive integer, or leave top_n out for all results",
    "return_documents": "send true or false",
    "return_explanations": "send true or false",
    "rank_fields": "send a list of field names",
    "raw_scores": "send true or false",
    "return_text": "send true or false",
    "truncate": "send true or false",
}


class ApiError(Exception):
    """An HTTP error answer: status, a message that names the field and the fix, optional headers.

    The JSON body is ``{"message", "error", "error_type", "field"}``: ``message`` is what Cohere clients
    show, ``error``/``error_type`` what TEI clients read.
    """

    def __init__(self, status: int, message: str, *, field: str | None = None, error_type: str = "validation",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "error": self.message, "error_type": self.error_type, "field": self.field}


class CohereRerankRequest(BaseModel):
    """Cohere v1/v2 and Jina rerank request; unknown fields (``max_tokens_per_doc``, ``priority``, ...)
    are accepted and ignored, as clients send them."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: StrictStr
    documents: list[StrictStr | dict[str, Any]]
    top_n: int | None = None
    return_documents: bool | None = None
    return_explanations: bool | None = None
    rank_fields: list[StrictStr] | None = None


class TEIRerankRequest(BaseModel):
    """Hugging Face text-embeddings-inference ``/rerank`` request."""

    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: str | None = None


def _loc(loc: tuple[Any, ...]) -> str:
    """``("documents", 3, "str")`` -> ``"documents[3]"`` (union branch names dropped)."""
    out = str(loc[0]) if loc else "body"
    for part in loc[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            break
    return out


def decode_body(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body; raise :class:`ApiError` (400 bad JSON, 422 not an object)."""
    try:
        data = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object with "
                            "Content-Type: application/json", error_type="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the request body must be a JSON object with 'query' and 'documents' (Cohere/Jina "
                            f"schema) or 'query' and 'texts' (TEI schema), got {type(data).__name__}", field="body")
    return data


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    """Decode a JSON body into ``model``; raise :class:`ApiError` naming the field on any mismatch."""
    return validate(decode_body(raw), model)


def validate(data: dict[str, Any], model: type[BaseModel]) -> Any:
    """Validate a decoded body into ``model``; the first mismatch becomes a 422 naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _loc(tuple(err["loc"]))
        top = field.split("[")[0]
        if err["type"] == "missing":
            msg = f"{field} is missing; {_HINTS.get(top, 'add it')}"
        elif top == "documents" and field != "documents":
            msg = (f"{field} must be a string or an object with a 'text' field, got "
                   f"{type(err.get('input')).__name__}")
        else:
            msg = f"{field}: {err['msg'].lower()}, got {json.dumps(err.get('input'))[:80]}; {_HINTS.get(top, '')}"
        raise ApiError(422, msg.rstrip("; "), field=field) from None


def _check_text(text: str, field: str, config: ServeConfig, what: str = "document") -> None:
    if not text.strip():
        fix = "send a non-empty query string" if what == "query" else "remove empty documents before reranking"
        raise ApiError(422, f"{field} is empty; {fix}", field=field)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ApiError(422, f"{field} holds a lone surrogate ({exc.object[exc.start]!r} at offset {exc.start}), "
                            "which is not valid Unicode text; clean it before sending", field=field) from None
    if size > config.max_document_bytes:
        raise ApiError(422, f"{field} is {size} bytes, over the limit of {config.max_document_bytes} bytes per "
                            f"{what} (--max-document-bytes); shorten or split it", field=field)


def check_query(query: str, config: ServeConfig) -> None:
    """Reject an empty, over-long or invalid query (422 naming ``query``)."""
    _check_text(query, "query", config, what="query")


def _check_count(n: int, field: str, config: ServeConfig) -> None:
    if n == 0:
        raise ApiError(422, f"{field} is empty; send at least one document to rerank", field=field)
    if n > config.max_documents:
        raise ApiError(422, f"{field} has {n} documents, over the limit of {config.max_documents} per request "
                            "(--max-documents); split the request", field=field)


def cohere_documents(req: CohereRerankRequest, config: ServeConfig) -> tuple[list[Document], list[dict[str, Any]]]:
    """The documents to score and, per document, what ``return_documents`` echoes (Cohere v1 returns
    ``{"text": ...}`` for a string and the object itself for an object).

    An object is scored on its ``text`` (or ``content``/``page_content``) with its ``title``; with
    ``rank_fields``, on those fields as ``name: value`` lines (Cohere v1 semantics).
    """
    check_query(req.query, config)
    _check_count(len(req.documents), "documents", config)
    docs: list[Document] = []
    echo: list[dict[str, Any]] = []
    for i, d in enumerate(req.documents):
        field = f"documents[{i}]"
        if isinstance(d, str):
            doc = Document(text=d)
            echo.append({"text": d})
        else:
            if req.rank_fields:
                parts = [f"{k}: {d[k]}" for k in req.rank_fields if d.get(k) is not None]
                if not parts:
                    raise ApiError(422, f"{field} has none of the rank_fields {req.rank_fields}; add one of them or "
                                        "drop rank_fields", field=field)
                doc = Document(text="\n".join(parts))
            else:
                if not any(k in d for k in _TEXT_KEYS):
                    raise ApiError(422, f"{field} is an object without a 'text' field; give it one (or pass "
                                        "rank_fields naming the fields to rank on)", field=field)
                try:
                    doc = to_documents([d])[0]
                except TypeError as exc:
                    raise ApiError(422, str(exc).replace("docs[0]", field), field=field) from None
            echo.append(d)
        _check_text(doc.prompt_text, field, config)
        docs.append(doc)
    if req.top_n is not None and req.top_n < 1:
        raise ApiError(422, f"top_n must be >= 1, got {req.top_n}; leave it out for all results", field="top_n")
    return docs, echo


def tei_documents(req: TEIRerankRequest, config: ServeConfig) -> list[Document]:
    """The documents of a TEI request (limits checked, fields named ``texts[i]``)."""
    check_query(req.query, config)
    _check_count(len(req.texts), "texts", config)
    for i, t in enumerate(req.texts):
        _check_text(t, f"texts[{i}]", config)
    return [Document(text=t) for t in req.texts]
