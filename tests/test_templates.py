"""Prompt templates: validation at load, rendering, files."""

from __future__ import annotations

import pytest

from reasonrank.templates import (
    DIRECT_TEMPLATE,
    REASONING_TEMPLATE,
    PromptTemplate,
    TemplateError,
    get_template,
    label_guide,
)


def test_builtin_templates_render_query_before_document() -> None:
    for tpl in (REASONING_TEMPLATE, DIRECT_TEMPLATE):
        msgs = tpl.messages(query="QQQ", document="DDD", labels=(0, 1, 2))
        assert [m["role"] for m in msgs] == ["system", "user"]
        user = msgs[1]["content"]
        assert user.index("QQQ") < user.index("DDD")
        assert "0, 1 or 2" in user and "2 = highly relevant" in user
        assert "{" not in user
    assert DIRECT_TEMPLATE.assistant_prefix.endswith(DIRECT_TEMPLATE.marker)


def test_prefix_is_shared_across_documents() -> None:
    a = REASONING_TEMPLATE.render_user(query="q", document="first doc", labels=(0, 1, 2))
    b = REASONING_TEMPLATE.render_user(query="q", document="second doc", labels=(0, 1, 2))
    shared = a[: a.index("first doc")]
    assert b.startswith(shared) and "q" in shared


def test_document_braces_are_not_interpreted() -> None:
    user = DIRECT_TEMPLATE.render_user(query="{x}", document="code {document} {0}", labels=(0, 1))
    assert "code {document} {0}" in user and "{x}" in user


@pytest.mark.parametrize("kwargs,needle", [
    (dict(user="{query} {doc}"), "unknown placeholder {doc}"),
    (dict(user="only {query}"), "must contain {document}"),
    (dict(user="{document} then {query}"), "must come before {document}"),
    (dict(user="{query} {document}", system="sys {query}"), "not the system message"),
    (dict(user="{query} {document", system=""), "malformed template text"),
    (dict(user="{query} {document}", assistant_prefix="Answer:"), "must end with the marker"),
    (dict(user="{query} {document}", mode="listwise"), "mode must be"),
    (dict(user="{query} {document}", marker="  "), "marker must be"),
])
def test_invalid_templates_fail_at_load(kwargs: dict, needle: str) -> None:
    base = dict(name="t", mode="direct", system="", assistant_prefix="Relevance:")
    with pytest.raises(TemplateError, match=None) as info:
        PromptTemplate(**{**base, **kwargs})
    assert needle in str(info.value)


def test_from_file_and_mapping(tmp_path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text("name: mine\nmode: direct\nsystem: Judge.\nuser: |\n  Q={query}\n  D={document}\n"
                 "  Labels {labels}\nassistant_prefix: 'Relevance:'\n")
    tpl = get_template(str(f), "direct")
    assert tpl.name == "mine"
    assert tpl.render_user(query="a", document="b", labels=(0, 1)) == "Q=a\nD=b\nLabels 0 or 1\n"
    with pytest.raises(TemplateError, match="unknown template field"):
        PromptTemplate.from_mapping({"name": "x", "mode": "direct", "user": "{query}{document}", "colour": 1})
    with pytest.raises(TemplateError, match="missing required field"):
        PromptTemplate.from_mapping({"name": "x"})


def test_get_template_resolution_errors() -> None:
    assert get_template(None, "reasoning") is REASONING_TEMPLATE
    assert get_template("prorank", "direct") is DIRECT_TEMPLATE
    with pytest.raises(TemplateError, match="pass mode='direct'"):
        get_template("prorank", "reasoning")
    with pytest.raises(TemplateError, match="unknown template 'nope'"):
        get_template("nope", "direct")


def test_label_guide_other_scales() -> None:
    assert label_guide(range(5)).startswith("0 = not relevant ... 4 = perfectly relevant")


def test_verdict_note_asks_to_explain_a_given_label() -> None:
    """explain_top_k's prompt: the reasoning prompt, then the template's verdict_note with the direct label."""
    plain = REASONING_TEMPLATE.render_user(query="q", document="d", labels=(0, 1))
    given = REASONING_TEMPLATE.render_user(query="q", document="d", labels=(0, 1), verdict=1)
    assert given == plain + "\n\nThe relevance label of this document is 1. Explain why it deserves that label, " \
                            "then give it on its own line as 'Relevance: 1'."
    assert REASONING_TEMPLATE.messages(query="q", document="d", labels=(0, 1), verdict=0)[-1]["content"].endswith(
        "is 0. Explain why it deserves that label, then give it on its own line as 'Relevance: 0'.")
    with pytest.raises(ValueError, match=r"verdict 2 is not on the label scale \(0, 1\)"):
        REASONING_TEMPLATE.render_user(query="q", document="d", labels=(0, 1), verdict=2)
    with pytest.raises(TemplateError, match="has no verdict_note"):
        DIRECT_TEMPLATE.render_user(query="q", document="d", labels=(0, 1), verdict=1)


@pytest.mark.parametrize("fields, fix", [
    ({"mode": "reasoning", "verdict_note": "Explain the label."}, "verdict_note must contain {verdict}"),
    ({"mode": "reasoning", "verdict_note": "Label {verdict} for {document}."}, "not {document}"),
    ({"mode": "reasoning", "verdict_note": "Label {verdict}, {score}."}, "not {score}"),
    ({"mode": "direct", "assistant_prefix": "Relevance:", "verdict_note": "Label {verdict}."},
     "only a reasoning template"),
])
def test_bad_verdict_note_fails_at_load(fields: dict, fix: str) -> None:
    with pytest.raises(TemplateError, match=fix):
        PromptTemplate.from_mapping({"name": "t", "user": "{query} {document}", **fields})


def test_verdict_lead_starts_the_explanation_of_a_given_label() -> None:
    """With a verdict, the assistant turn starts the explanation with the label in words (label_name); without
    one, or in training (lead=False), it is the plain prefix."""
    from reasonrank.prompting import PromptBuilder

    assert REASONING_TEMPLATE.assistant_start(labels=(0, 1), verdict=1) == \
        "Explanation: The document is relevant to the query because it"
    assert REASONING_TEMPLATE.assistant_start(labels=(0, 1, 2), verdict=2) == \
        "Explanation: The document is highly relevant to the query because it"
    assert REASONING_TEMPLATE.assistant_start(labels=(0, 1)) == "Explanation:"
    builder = PromptBuilder(REASONING_TEMPLATE, labels=(0, 1))
    assert builder.prompt("q", "d", verdict=0).assistant_prefix == \
        "Explanation: The document is not relevant to the query because it"
    unled = builder.prompt("q", "d", verdict=0, lead=False)
    assert unled.assistant_prefix == "Explanation:" and unled.messages == builder.prompt("q", "d", verdict=0).messages
    with pytest.raises(TemplateError, match="verdict_lead may use {relevance} and {verdict}, not {query}"):
        PromptTemplate.from_mapping({"name": "t", "mode": "reasoning", "user": "{query} {document}",
                                     "verdict_note": "Label {verdict}.", "verdict_lead": " {query}"})
    with pytest.raises(TemplateError, match="verdict_lead needs a verdict_note"):
        PromptTemplate.from_mapping({"name": "t", "mode": "reasoning", "user": "{query} {document}",
                                     "verdict_lead": " It is {relevance}"})
