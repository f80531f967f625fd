"""What the framework adapters (LlamaIndex, LangChain, Haystack) write on each reranked item.

The adapters only translate: each copies its input item, sets the framework's score field, and adds
:func:`result_metadata` under the keys of :data:`METADATA_KEYS`, defined here once for all of them.
"""

from __future__ import annotations

from typing import Any

from .schema import RerankResult

__all__ = ["METADATA_KEYS", "LABEL_KEY", "EXPLANATION_KEY", "PARSE_OK_KEY", "result_metadata"]

LABEL_KEY = "reasonrank_label"
"""The graded label (int)."""
EXPLANATION_KEY = "reasonrank_explanation"
"""The model's relevance explanation (str in reasoning mode, else None)."""
PARSE_OK_KEY = "reasonrank_parse_ok"
"""False when the model output could not be parsed and the label came from the fallback (bool)."""

METADATA_KEYS: tuple[str, ...] = (LABEL_KEY, EXPLANATION_KEY, PARSE_OK_KEY)
"""Every metadata key the adapters write, in order."""


def result_metadata(result: RerankResult) -> dict[str, Any]:
    """The metadata of :data:`METADATA_KEYS` for one result, as plain Python values.

    Example:
        >>> r = RerankResult(index=0, id="d1", text="...", score=0.5, label=1, label_probs=(0.5, 0.5),
        ...                  explanation="why")
        >>> result_metadata(r)
        {'reasonrank_label': 1, 'reasonrank_explanation': 'why', 'reasonrank_parse_ok': True}
    """
    return {LABEL_KEY: int(result.label), EXPLANATION_KEY: result.explanation,
            PARSE_OK_KEY: bool(result.parse_ok)}
