"""Document normalisation and the optional-dependency helper (no model needed)."""

from __future__ import annotations

import pytest

from reasonrank import Document, MissingDependencyError
from reasonrank._deps import require
from reasonrank.schema import to_documents


def test_mixed_inputs_normalised() -> None:
    docs = to_documents(["plain", {"_id": 3, "text": "t", "title": "T", "metadata": {"k": 1}},
                         {"page_content": "lc"}, Document(text="obj", id="o")])
    assert [d.text for d in docs] == ["plain", "t", "lc", "obj"]
    assert [d.id for d in docs] == [None, "3", None, "o"]
    assert docs[1].prompt_text == "T\nt" and docs[1].metadata == {"k": 1}


@pytest.mark.parametrize("docs,exc,needle", [
    (["ok", None], TypeError, "docs[1] is None"),
    (["ok", 5], TypeError, "docs[1] has unsupported type int"),
    ([{"body": "x"}], TypeError, "docs[0] is a mapping without a text field"),
    ([{"text": None}], TypeError, "docs[0]['text'] must be a str"),
    ([{"text": "x", "metadata": [1]}], TypeError, "'metadata'] must be a mapping"),
    ("a single string", TypeError, "wrap it in a list"),
    (42, TypeError, "docs must be a list"),
])
def test_bad_documents_name_the_index(docs, exc, needle) -> None:
    with pytest.raises(exc) as info:
        to_documents(docs)
    assert needle in str(info.value)


def test_require_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r'pip install "reasonrank\[vllm\]"'):
        require("reasonrank_no_such_engine", "vllm")
    assert issubclass(MissingDependencyError, ImportError)
