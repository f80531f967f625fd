"""End-to-end behaviour of ReasoningReranker + transformers backend on a tiny random model.

The tiny model is random, so these tests check plumbing and invariants (ordering, batching, padding,
truncation, error handling, label-token arithmetic), never ranking quality.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from reasonrank import Document, MissingDependencyError, ParseError, ReasoningReranker, TemplateError
from reasonrank.backends import Prompt
from reasonrank.parsing import expected_score

QUERY = "what is bm25 ranking"
DOCS = [
    "BM25 is a ranking function used by search engines.",
    "The cat sat on the mat.",
    {"id": "d3", "title": "Vaccines", "text": "Vaccines train the immune system.", "metadata": {"src": "wiki"}},
    "Photosynthesis converts light into chemical energy in plants, and Python is a programming language.",
    "x",
]


@pytest.fixture(scope="module")
def direct(tiny_model_dir: Path) -> ReasoningReranker:
    # fp32: these tests recompute log-probabilities by hand and compare batchings to 1e-5 (the bf16 default on
    # CPUs with native bf16 is bounded against fp32 in tests/test_backend_dtype.py)
    return ReasoningReranker(str(tiny_model_dir), mode="direct", batch_size=2, dtype="float32")


@pytest.fixture(scope="module")
def reasoning(direct: ReasoningReranker) -> ReasoningReranker:
    # shares the loaded engine with the direct reranker
    return ReasoningReranker(backend=direct.backend, mode="reasoning", max_new_tokens=12)


def test_score_shape_order_and_probabilities(direct: ReasoningReranker) -> None:
    res = direct.score(QUERY, DOCS)
    assert [r.index for r in res] == list(range(len(DOCS)))
    assert res[2].id == "d3" and res[2].metadata == {"src": "wiki"} and res[2].text == "Vaccines train the immune system."
    for r in res:
        assert len(r.label_probs) == 3 and sum(r.label_probs) == pytest.approx(1.0)
        assert r.score == pytest.approx(expected_score(r.label_probs, (0, 1, 2)))
        assert 0.0 <= r.score <= 1.0
        assert r.label == max(range(3), key=lambda k: r.label_probs[k])
        assert r.explanation is None and r.raw_output is None and r.parse_ok and r.rank is None
    assert len({round(r.score, 9) for r in res}) > 1, "different documents should not all score the same"


def test_rank_is_sorted_score_with_stable_ties(direct: ReasoningReranker) -> None:
    scored = direct.score(QUERY, DOCS)
    ranked = direct.rank(QUERY, DOCS)
    expected = sorted(scored, key=lambda r: (-r.score, r.index))
    assert [r.index for r in ranked] == [r.index for r in expected]
    assert [r.rank for r in ranked] == list(range(1, len(DOCS) + 1))
    assert [r.index for r in direct.rank(QUERY, DOCS, top_k=2)] == [r.index for r in expected[:2]]
    assert direct.rank(QUERY, DOCS, top_k=0) == []
    dup = direct.rank(QUERY, ["same text", "same text"])
    assert [r.index for r in dup] == [0, 1] and dup[0].score == pytest.approx(dup[1].score, abs=1e-6)


def test_deterministic(direct: ReasoningReranker) -> None:
    assert [r.score for r in direct.score(QUERY, DOCS)] == [r.score for r in direct.score(QUERY, DOCS)]


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("bfloat16", 1e-4)])
def test_batching_and_left_padding_do_not_change_scores(tiny_model_dir: Path, dtype: str, tol: float) -> None:
    """Batch composition and left padding change nothing beyond float error, in fp32 and in bf16 (the CPU
    default where native; measured max |diff| 1.1e-7 here, bounded at 1e-4)."""
    one, big, two = (ReasoningReranker(str(tiny_model_dir), mode="direct", batch_size=n, dtype=dtype) for n in (1, 16, 2))
    a = [r.score for r in one.score(QUERY, DOCS)]
    b = [r.score for r in big.score(QUERY, DOCS)]
    c = [r.score for r in two.score(QUERY, DOCS)]
    assert a == pytest.approx(b, abs=tol) and a == pytest.approx(c, abs=tol)


def test_direct_logprobs_match_an_unpadded_forward_pass(direct: ReasoningReranker) -> None:
    """Recompute the label log-probabilities by hand: one unbatched forward over the rendered prompt."""
    import torch

    be = direct.backend
    prompt = direct._prompt(QUERY, DOCS[0])
    spacer, cands = be.label_tokens(direct.spec)
    ids = be.tokenizer(be.render(prompt).rstrip(" "), add_special_tokens=False)["input_ids"] + spacer
    with torch.inference_mode():
        logp = torch.log_softmax(be.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    manual = {lab: torch.logsumexp(logp[torch.tensor(t)], 0).item() for lab, t in cands.items()}
    got = be.label_logprobs([prompt], direct.spec)[0]
    assert got.keys() == manual.keys()
    for lab in manual:
        assert got[lab] == pytest.approx(manual[lab], abs=1e-4)


def test_label_tokens_are_the_digits(direct: ReasoningReranker) -> None:
    be = direct.backend
    spacer, cands = be.label_tokens(direct.spec)
    assert set(cands) == {0, 1, 2}
    for lab, ids in cands.items():
        assert all(be.tokenizer.decode([t]).strip() == str(lab) for t in ids)
    text = be.tokenizer.decode(be.tokenizer.encode("Relevance:", add_special_tokens=False) + spacer + cands[2][:1])
    assert text.replace(" ", "") == "Relevance:2"


def test_reasoning_on_random_model_falls_back_and_flags(reasoning: ReasoningReranker) -> None:
    before = reasoning.stats.parse_failures
    res = reasoning.score(QUERY, DOCS[:3])
    assert len(res) == 3
    for r in res:
        assert r.raw_output is not None and r.raw_output.startswith("Explanation:")
        assert not r.parse_ok  # a random model writes no verdict in 12 tokens
        assert sum(r.label_probs) == pytest.approx(1.0)
        assert r.label == max(range(3), key=lambda k: r.label_probs[k])
    assert reasoning.stats.parse_failures == before + 3
    assert reasoning.stats.generated_tokens > 0


def test_reasoning_fallback_scores_the_forced_verdict(reasoning: ReasoningReranker) -> None:
    """The fallback score is the label distribution after '<output>\\nRelevance:' - recompute it."""
    r = reasoning.score(QUERY, DOCS[:1])[0]
    forced = Prompt(messages=reasoning._prompt(QUERY, DOCS[0]).messages,
                    assistant_prefix=r.raw_output.rstrip() + "\nRelevance:")
    lp = reasoning.backend.label_logprobs([forced], reasoning.spec)[0]
    z = sum(math.exp(v) for v in lp.values())
    assert r.label_probs == pytest.approx([math.exp(lp[k]) / z for k in (0, 1, 2)], abs=1e-5)


def test_reasoning_raise_policy(reasoning: ReasoningReranker) -> None:
    strict = ReasoningReranker(backend=reasoning.backend, mode="reasoning", max_new_tokens=6, on_parse_error="raise")
    with pytest.raises(ParseError, match=r"docs\[0\].*on_parse_error='fallback'"):
        strict.score(QUERY, DOCS[:1])


def test_generation_locates_the_label_token(direct: ReasoningReranker) -> None:
    """The label log-probabilities come from the step that wrote the verdict's digit."""
    be = direct.backend
    text = "Explanation: it defines bm25.\nRelevance: 2"
    ids = be.tokenizer.encode(text, add_special_tokens=False)
    _, cands = be.label_tokens(direct.spec)
    flat = [(lab, t) for lab, ts in cands.items() for t in ts]
    steps = [[-float(k + 1)] * len(flat) for k in range(len(ids))]  # step k: every candidate at -(k+1)
    digit_step = max(k for k, t in enumerate(ids) if be.tokenizer.decode([t]).strip() == "2")
    label_ids = {t for _, t in flat}
    gen = be._finish(ids, steps, flat, label_ids, direct_locate := (lambda s: s.rindex("2")))
    assert gen.text == text and gen.num_tokens == len(ids)
    assert gen.label_logprobs[0] == pytest.approx(-(digit_step + 1) + math.log(len(cands[0])))
    assert be._finish(ids, steps, flat, label_ids, lambda s: None).label_logprobs is None
    assert direct_locate(text) == len(text) - 1


def test_truncation_flags_and_keeps_original_text(tiny_model_dir: Path) -> None:
    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", max_doc_tokens=8)
    long_doc = "BM25 is a ranking function used by search engines. " * 20
    huge_doc = "word " * 1_000_000
    res = rr.score(QUERY, ["short", long_doc, huge_doc])
    assert [r.truncated for r in res] == [False, True, True]
    assert res[1].text == long_doc and res[2].text == huge_doc
    assert rr.stats.truncated == 2 and rr.stats.documents == 3
    # the truncated prompt equals the prompt built from the first 8 tokens
    text, cut = rr.backend.truncate(long_doc, 8)
    assert cut and len(rr.backend.tokenizer.encode(text, add_special_tokens=False)) <= 8
    assert res[1].score == pytest.approx(rr.score(QUERY, [text])[0].score, abs=1e-6)


def test_empty_docs_and_async(direct: ReasoningReranker) -> None:
    assert direct.score(QUERY, []) == [] and direct.rank(QUERY, [], top_k=3) == []
    sync = direct.rank(QUERY, DOCS, top_k=3)
    assert asyncio.run(direct.arank(QUERY, DOCS, top_k=3)) == sync
    assert asyncio.run(direct.ascore(QUERY, [])) == []


@pytest.mark.parametrize("query,docs,exc,needle", [
    ("", ["a"], ValueError, "query is empty"),
    ("   ", ["a"], ValueError, "query is empty"),
    (None, ["a"], TypeError, "query must be a str"),
    ("q", ["a", None], TypeError, "docs[1] is None"),
    ("q", ["a", 3.5], TypeError, "docs[1] has unsupported type float"),
    ("q", ["a", "  "], ValueError, "docs[1] has empty text"),
    ("q", [{"txt": "a"}], TypeError, "docs[0] is a mapping without a text field"),
    ("q", "just a string", TypeError, "wrap it in a list"),
])
def test_bad_input_errors(direct: ReasoningReranker, query, docs, exc, needle) -> None:
    with pytest.raises(exc) as info:
        direct.score(query, docs)
    assert needle in str(info.value)


def test_bad_top_k_and_overlong_query(direct: ReasoningReranker) -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="top_k must be"):
            direct.rank(QUERY, DOCS, top_k=bad)
    with pytest.raises(ValueError, match="over the model's context"):
        direct.score("bm25 " * 5000, ["doc"])


@pytest.mark.parametrize("kwargs,exc,needle", [
    (dict(mode="listwise"), ValueError, "mode must be"),
    (dict(label_scale=(1, 2)), ValueError, "label scale must be"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive int"),
    (dict(max_doc_tokens=0), ValueError, "max_doc_tokens must be"),
    (dict(on_parse_error="ignore"), ValueError, "on_parse_error must be"),
    (dict(backend="nope"), ValueError, "unknown backend 'nope'"),
    (dict(template="prorank"), TemplateError, "pass mode='direct'"),
])
def test_bad_constructor_arguments(tiny_model_dir: Path, kwargs, exc, needle) -> None:
    with pytest.raises(exc) as info:
        ReasoningReranker(str(tiny_model_dir), **kwargs)
    assert needle in str(info.value)


def test_backend_instance_cannot_take_options(direct: ReasoningReranker) -> None:
    with pytest.raises(ValueError, match="cannot be given with a ready Backend"):
        ReasoningReranker(backend=direct.backend, device="cpu")


def test_missing_engine_names_the_extra(tiny_model_dir: Path) -> None:
    pytest.importorskip  # noqa: B018 - documentation: this test needs vllm to be absent
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match=r'pip install "reasonrank\[vllm\]"'):
            ReasoningReranker(str(tiny_model_dir), backend="vllm")
    else:
        pytest.skip("vllm is installed in this environment")


def test_binary_scale_and_custom_template(tiny_model_dir: Path, direct: ReasoningReranker, tmp_path: Path) -> None:
    f = tmp_path / "tpl.yaml"
    f.write_text("name: short\nmode: direct\nuser: 'Q: {query}\\nD: {document}\\nLabel {labels}?'\n"
                 "assistant_prefix: 'Relevance:'\n")
    rr = ReasoningReranker(backend=direct.backend, mode="direct", label_scale=1, template=str(f))
    res = rr.score(QUERY, [Document(text="BM25 ranks documents", id="a")])
    assert len(res[0].label_probs) == 2 and res[0].label in (0, 1)
    assert res[0].score == pytest.approx(res[0].label_probs[1])
    assert rr.template.name == "short" and "system" not in [m["role"] for m in rr._prompt("q", "d").messages]


def test_loaded_model_object_backend(direct: ReasoningReranker) -> None:
    from reasonrank.backends.hf import TransformersBackend

    be = TransformersBackend(direct.backend.model, tokenizer=direct.backend.tokenizer)
    rr = ReasoningReranker(backend=be, mode="direct")
    assert [r.score for r in rr.score(QUERY, DOCS)] == pytest.approx([r.score for r in direct.score(QUERY, DOCS)])
    with pytest.raises(TypeError, match="tokenizer="):
        TransformersBackend(direct.backend.model)


def test_trained_model_metadata_sets_defaults(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A directory with reasonrank.json (written by reasonrank-train) defaults mode, scale and template."""
    import json
    import shutil

    model = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, model)
    (model / "reasonrank.json").write_text(json.dumps({"mode": "direct", "label_scale": [0, 1],
                                                        "template": "prorank"}))
    rr = ReasoningReranker(str(model))
    assert (rr.mode, rr.labels, rr.template.name) == ("direct", (0, 1), "prorank")
    explicit = ReasoningReranker(str(model), mode="reasoning", label_scale=2)
    assert (explicit.mode, explicit.labels, explicit.template.name) == ("reasoning", (0, 1, 2), "interank")
    (model / "reasonrank.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        ReasoningReranker(str(model))


def test_explain_top_k_explains_only_the_shown_results(direct: ReasoningReranker) -> None:
    """Direct ranking of every candidate, then one reasoning generation per result in the top N only: ranks,
    scores and labels are the direct pass's; the explanations are the reasoning reranker's own, asked to explain
    the direct labels."""
    explaining = ReasoningReranker(backend=direct.backend, mode="direct", explain_top_k=2, max_new_tokens=12)
    reasoning = ReasoningReranker(backend=direct.backend, mode="reasoning", max_new_tokens=12)
    plain = direct.rank(QUERY, DOCS)
    got = explaining.rank(QUERY, DOCS)
    assert [(r.index, r.score, r.label) for r in got] == [(r.index, r.score, r.label) for r in plain]
    assert all(r.raw_output is not None for r in got[:2]) and all(r.explanation is None for r in got[2:])
    judged = reasoning.score_pairs([(QUERY, DOCS[r.index]) for r in got[:2]], verdicts=[r.label for r in got[:2]])
    assert [r.raw_output for r in got[:2]] == [j.raw_output for j in judged]
    assert [r.explanation for r in got[:2]] == [j.explanation for j in judged]
    top1 = asyncio.run(explaining.arank(QUERY, DOCS, top_k=1))
    assert [(r.index, r.raw_output) for r in top1] == [(r.index, r.raw_output) for r in got[:1]]
    assert direct.rank(QUERY, DOCS) == plain  # the option is per reranker: the plain one explains nothing


@pytest.mark.parametrize("kwargs, fix", [
    ({"mode": "direct", "explain_top_k": 0}, "explain_top_k must be a positive int"),
    ({"mode": "direct", "explain_top_k": True}, "pass None for no explanations"),
    ({"mode": "reasoning", "explain_top_k": 3}, "pass mode='direct' or drop explain_top_k"),
])
def test_explain_top_k_rejects_bad_values(direct: ReasoningReranker, kwargs: dict, fix: str) -> None:
    with pytest.raises(ValueError, match=fix):
        ReasoningReranker(backend=direct.backend, **kwargs)


def test_explain_top_k_asks_to_explain_the_direct_label() -> None:
    """The explainer is told each shown result's direct-mode label (the verdict_note) and asked why, and its
    explanation starts with the verdict_lead that states the label; the serving path (score_pairs with
    verdicts) sends the same prompts."""
    from reasonrank.testing import ScriptedBackend

    backend = ScriptedBackend(" defines BM25.\nRelevance: 1", {0: math.log(0.3), 1: math.log(0.7)},
                              label_logprobs={0: math.log(0.2), 1: math.log(0.8)})
    rr = ReasoningReranker(backend=backend, mode="direct", label_scale=(0, 1), explain_top_k=1)
    top, rest = rr.rank("what is bm25", ["BM25 is a ranking function", "cats"])
    [prompt] = backend.generate_prompts
    assert prompt.messages[-1]["content"].endswith("The relevance label of this document is 1. Explain why it "
                                                   "deserves that label, then give it on its own line as "
                                                   "'Relevance: 1'.")
    assert prompt.assistant_prefix == "Explanation: The document is relevant to the query because it"  # the lead
    assert (top.label, top.explanation, rest.explanation) == (
        1, "The document is relevant to the query because it defines BM25.", None)
    assert top.raw_output == prompt.assistant_prefix + " defines BM25.\nRelevance: 1"
    [again] = rr.explainer.score_pairs([("what is bm25", "BM25 is a ranking function")], verdicts=[top.label])
    assert backend.generate_prompts[-1] == prompt and again.explanation == top.explanation
    with pytest.raises(ValueError, match="verdicts need mode='reasoning' and one verdict per document"):
        rr.score_pairs([("what is bm25", "cats")], verdicts=[1])
