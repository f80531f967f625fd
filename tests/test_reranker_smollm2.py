"""End-to-end on the real SmolLM2-135M-Instruct (a weak judge: behaviour, never ranking quality)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends import Prompt
from reasonrank.models import LOCAL_SMOLLM2, smollm2_gguf_path

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.jsonl"
QUERY = "how does BM25 score documents"


def _docs() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reasoning(smollm2_direct: ReasoningReranker) -> ReasoningReranker:
    return ReasoningReranker(backend=smollm2_direct.backend, mode="reasoning", max_new_tokens=48)


def test_direct_mode_end_to_end(smollm2_direct: ReasoningReranker) -> None:
    docs = _docs()
    scored = smollm2_direct.score(QUERY, docs)
    ranked = smollm2_direct.rank(QUERY, docs, top_k=4)
    assert [r.id for r in scored] == [d["id"] for d in docs]
    assert [r.index for r in ranked] == [r.index for r in sorted(scored, key=lambda r: (-r.score, r.index))][:4]
    assert all(r.parse_ok and r.label in (0, 1, 2) and not r.truncated for r in scored)
    assert [r.score for r in smollm2_direct.score(QUERY, docs)] == pytest.approx([r.score for r in scored], abs=1e-6)
    # a real instruct model puts most label-position mass on the digits: probabilities are not flat
    assert max(max(r.label_probs) for r in scored) > 0.5


def test_reasoning_mode_end_to_end(reasoning: ReasoningReranker) -> None:
    docs = _docs()[:4]
    res = reasoning.score(QUERY, docs)
    again = reasoning.score(QUERY, docs)
    assert [r.raw_output for r in res] == [r.raw_output for r in again]  # greedy: deterministic
    assert [r.score for r in res] == pytest.approx([r.score for r in again], abs=1e-6)
    for r in res:
        assert r.raw_output.startswith("Explanation:") and len(r.raw_output) > len("Explanation:")
        assert isinstance(r.explanation, str) and r.explanation
        assert r.label in (0, 1, 2) and sum(r.label_probs) == pytest.approx(1.0)
    ranked = reasoning.rank(QUERY, docs)
    assert [r.index for r in ranked] == [r.index for r in sorted(res, key=lambda r: (-r.score, r.index))]


def test_generated_label_probabilities_match_a_forced_pass(smollm2_direct: ReasoningReranker) -> None:
    """Label probabilities captured during generation (KV-cached decoding, at the step that wrote the digit)
    equal a fresh forward pass over prompt + output up to the label. SmolLM2-135M rarely writes the verdict
    itself, so the template's assistant prefix carries a fixed explanation and the model writes the label."""
    from reasonrank.parsing import parse_judgment

    prefix = "Explanation: The document is compared with the query.\nRelevance:"
    rr = ReasoningReranker(backend=smollm2_direct.backend, mode="reasoning", max_new_tokens=4,
                           sanitize_documents=False,  # the forced prompt below is rebuilt from the raw text
                           template={"name": "label-only", "mode": "reasoning", "system": "",
                                     "user": "Query: {query}\nDocument: {document}\nIs the document relevant? "
                                             "Explain, then write 'Relevance: X' with X = 0, 1 or 2.",
                                     "assistant_prefix": prefix})
    docs = _docs()
    res = rr.score(QUERY, docs)
    parsed = [r for r in res if r.parse_ok]  # SmolLM2 sometimes writes "X" instead of a digit
    assert len(parsed) >= 2, [r.raw_output for r in res]
    for r in parsed:
        assert r.raw_output.count("Relevance:") == 1  # generation stopped right after the digit
        j = parse_judgment(r.raw_output)
        assert j.label_start >= len(prefix)  # the digit was generated, not part of the prefix
        assert r.label == j.label
        forced = Prompt(messages=rr._prompt(QUERY, docs[r.index]["title"] + "\n" + docs[r.index]["text"]).messages,
                        assistant_prefix=r.raw_output[: j.label_start].rstrip())
        lp = rr.backend.label_logprobs([forced], rr.spec)[0]
        z = sum(math.exp(v) for v in lp.values())
        assert r.label_probs == pytest.approx([math.exp(lp[k]) / z for k in (0, 1, 2)], abs=2e-3)
        assert r.label == max((0, 1, 2), key=lambda k: lp[k])  # greedy wrote the most probable digit


def test_truncation_on_real_tokenizer(smollm2_direct: ReasoningReranker) -> None:
    rr = ReasoningReranker(backend=smollm2_direct.backend, mode="direct", max_doc_tokens=16)
    long_doc = _docs()[0]["text"] * 3
    res = rr.score(QUERY, [long_doc, "BM25."])
    assert [r.truncated for r in res] == [True, False] and res[0].text == long_doc


def test_gguf_file_loads_directly_without_cache(smollm2_direct: ReasoningReranker) -> None:
    """A .gguf path is a valid model (dequantised by transformers); it scores like the cached conversion."""
    rr = ReasoningReranker(str(smollm2_gguf_path()), mode="direct", cache_gguf=False, dtype="float32")  # as the fixture
    docs = _docs()[:3]
    assert [r.score for r in rr.score(QUERY, docs)] == pytest.approx(
        [r.score for r in smollm2_direct.score(QUERY, docs)], abs=1e-5)


def test_alias_resolves_to_the_cached_conversion(smollm2_model_dir: Path) -> None:
    rr = ReasoningReranker(LOCAL_SMOLLM2, mode="direct")
    assert rr.backend.model.config.num_hidden_layers == 30
    assert (smollm2_model_dir / "model.safetensors").is_file()
