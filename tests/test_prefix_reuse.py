"""Shared-prefix KV reuse in the transformers backend: the same log-probabilities as scoring every prompt whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends.hf import MIN_SHARED_PREFIX, TransformersBackend, length_sorted_batches

QUERY = "how does the bm25 ranking function score a document for a query"
DOCS = ["BM25 scores documents by term frequency and inverse document frequency.", "cats",
        "A long document about saturation of term frequency in BM25, length normalisation and k1 and b. " * 3,
        {"title": "Pasta", "text": "Boil water and cook the pasta."}, "Lucene uses BM25 by default."]


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-4), ("bfloat16", 2e-2)])
def test_reuse_gives_the_scores_of_whole_prompts(tiny_model_dir: Path, dtype: str, tol: float) -> None:
    """Label log-probabilities with and without reuse; measured max |diff| 9.5e-7 in fp32 and 0 in bf16 on this
    model. Bounds: 1e-4 (fp32) and 2e-2 (bf16, where the prefix's KV, computed in another batch shape, may
    round differently on other models and kernels)."""
    whole = TransformersBackend(str(tiny_model_dir), dtype=dtype, batch_size=2, reuse_prefix=False)
    reuse = TransformersBackend(whole.model, tokenizer=whole.tokenizer, batch_size=2)
    assert reuse.reuse_prefix and not whole.reuse_prefix
    a_rr = ReasoningReranker(backend=whole, mode="direct")
    b_rr = ReasoningReranker(backend=reuse, mode="direct")
    prompts = [a_rr._prompt(QUERY, d if isinstance(d, str) else d["text"]) for d in DOCS]
    seqs = [reuse._encode(reuse.render(p).rstrip(" ")) for p in prompts]
    shared = reuse._shared_prefix([s + [0] for s in seqs])
    assert shared is not None and len(shared[0]) >= MIN_SHARED_PREFIX
    a = whole.label_logprobs(prompts, a_rr.spec)
    b = reuse.label_logprobs(prompts, b_rr.spec)
    diff = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x)
    assert diff < tol, diff
    ra = [r.index for r in a_rr.rank(QUERY, DOCS)]
    assert [r.index for r in b_rr.rank(QUERY, DOCS)] == ra or dtype == "bfloat16"


def test_no_reuse_without_a_shared_prefix(tiny_model_dir: Path) -> None:
    be = TransformersBackend(str(tiny_model_dir), dtype="float32")
    assert be._shared_prefix([[1, 2, 3], [1, 2, 4]]) is None  # too short to be worth a pass
    assert be._shared_prefix([list(range(40))]) is None       # one prompt: nothing to share
    long = list(range(5, 45))
    got = be._shared_prefix([long + [1, 2], long + [3]])
    assert got is not None and got[0] == long
    assert be._shared_prefix([long, long])[0] == long[:-1]    # each prompt keeps one token of its own
    # different queries in one call (score_pairs): only what they share counts
    rr = ReasoningReranker(backend=be, mode="direct")
    pairs = [("what is bm25", "BM25 ranks documents."), ("who won the 2018 world cup", "France won.")]
    got = rr.score_pairs(pairs)
    solo = [rr.score(q, [d])[0].score for q, d in pairs]
    assert [r.score for r in got] == pytest.approx(solo, abs=1e-5)


def test_token_budget_bounds_batches_and_keeps_scores(tiny_model_dir: Path) -> None:
    """max_batch_tokens splits batches of long documents (padding counted); scores do not change."""
    big = TransformersBackend(str(tiny_model_dir), dtype="float32", batch_size=16, max_batch_tokens=None)
    small = TransformersBackend(big.model, tokenizer=big.tokenizer, batch_size=16, max_batch_tokens=300)
    rr_big, rr_small = (ReasoningReranker(backend=b, mode="direct") for b in (big, small))
    docs = [f"document {i} " + "bm25 ranking term " * (5 + 10 * i) for i in range(6)]
    got = [r.score for r in rr_small.score(QUERY, docs)]
    want = [r.score for r in rr_big.score(QUERY, docs)]
    assert got == pytest.approx(want, abs=1e-5)
    prompts = [rr_small._prompt(QUERY, d) for d in docs]
    lengths = [len(small._encode(small.render(p))) for p in prompts]
    batches = length_sorted_batches(lengths, 16, 300)
    assert len(batches) > 1 and all(len(b) * max(lengths[i] for i in b) <= 300 or len(b) == 1 for b in batches)
    assert length_sorted_batches(lengths, 16, None) == [sorted(range(6), key=lambda i: -lengths[i])]
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive int or None"):
        TransformersBackend(big.model, tokenizer=big.tokenizer, max_batch_tokens=0)


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_generation_with_reuse_matches_whole_prompts(model: str, tiny_model_dir: Path, smollm2_model_dir: Path) -> None:
    """Reasoning mode (generation, then the forced verdict continued from the generation's cache) with the
    shared prefix computed once: the same greedy outputs and label log-probabilities as whole prompts, fp32.
    Bound 1e-4 (measured max |diff| on these models: see the assertion message when it fails)."""
    path = tiny_model_dir if model == "tiny" else smollm2_model_dir
    whole = TransformersBackend(str(path), dtype="float32", batch_size=3, reuse_prefix=False)
    reuse = TransformersBackend(whole.model, tokenizer=whole.tokenizer, batch_size=3)
    a_rr, b_rr = (ReasoningReranker(backend=b, mode="reasoning", max_new_tokens=24) for b in (whole, reuse))
    prompts = [a_rr._prompt(QUERY, d if isinstance(d, str) else d["text"]) for d in DOCS]
    seqs = reuse.generation_inputs(prompts, 24)
    assert reuse._shared_prefix(seqs) is not None  # the reuse path really runs
    a = whole.generate(prompts, a_rr.spec, locate=a_rr._locate, max_new_tokens=24)
    b = reuse.generate(prompts, b_rr.spec, locate=b_rr._locate, max_new_tokens=24)
    assert [g.text for g in b] == [g.text for g in a]
    assert [g.forced_logprobs is None for g in b] == [g.forced_logprobs is None for g in a]
    diffs = [abs(x[k] - y[k]) for ga, gb in zip(a, b)
             for x, y in [(ga.label_logprobs or {}, gb.label_logprobs or {}),
                          (ga.forced_logprobs or {}, gb.forced_logprobs or {})] for k in x]
    assert diffs and max(diffs) < 1e-4, max(diffs)
    got = [r.score for r in b_rr.score(QUERY, DOCS)]
    assert got == pytest.approx([r.score for r in a_rr.score(QUERY, DOCS)], abs=1e-4)
