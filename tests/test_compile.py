"""``compile=True`` in the transformers backend: the MLP and RMSNorm blocks compiled, the scores eager mode's."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends.hf import TransformersBackend
from reasonrank.backends.hf_compile import compile_blocks

QUERY = "how does the bm25 ranking function score a document for a query"
DOCS = ["BM25 scores documents by term frequency and inverse document frequency.", "cats",
        "A long document about saturation of term frequency in BM25, length normalisation and k1 and b. " * 3,
        {"title": "Pasta", "text": "Boil water and cook the pasta."}, "Lucene uses BM25 by default."]


def test_compiled_blocks_score_as_eager_mode_does(tiny_model_dir: Path) -> None:
    """Direct scores, query likelihoods and greedy explanations of a compiled backend against eager mode on
    the same weights (separate copies: compiling works in place). Measured max |diff| of the scores: 0 to
    ~1e-7 in fp32 (fused kernels may round differently); bound 1e-4."""
    eager = TransformersBackend(str(tiny_model_dir), dtype="float32", batch_size=2)
    compiled = TransformersBackend(str(tiny_model_dir), dtype="float32", batch_size=2, compile=True)
    layers = compiled.model.config.num_hidden_layers
    assert compiled.compiled_blocks == 3 * layers + 1 and eager.compiled_blocks == 0  # 2 norms + MLP a layer
    mlp = compiled.model.model.layers[0].mlp
    assert mlp._compiled_call_impl is not None and eager.model.model.layers[0].mlp._compiled_call_impl is None
    a, b = (ReasoningReranker(backend=be, mode="direct", likelihood_weight=0.5) for be in (eager, compiled))
    ra, rb = a.rank(QUERY, DOCS), b.rank(QUERY, DOCS)
    assert [r.index for r in rb] == [r.index for r in ra]
    assert [r.score for r in rb] == pytest.approx([r.score for r in ra], abs=1e-4)
    assert [r.query_logprob for r in rb] == pytest.approx([r.query_logprob for r in ra], abs=1e-4)
    ga, gb = (ReasoningReranker(backend=be, mode="reasoning", max_new_tokens=12) for be in (eager, compiled))
    xa, xb = ga.score(QUERY, DOCS[:2]), gb.score(QUERY, DOCS[:2])
    assert [r.explanation for r in xb] == [r.explanation for r in xa]
    assert [r.score for r in xb] == pytest.approx([r.score for r in xa], abs=1e-4)


def test_a_model_without_known_blocks_is_an_error_naming_the_fix() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="compile=False"):
        compile_blocks(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_a_compiler_that_cannot_run_fails_at_start_naming_the_fix(tiny_model_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A C++ compiler that does not exist (inductor's CPU backend needs one): the error comes at start-up,
    from the warm-up, not inside the first request."""
    torch = pytest.importorskip("torch")
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()  # no graph compiled by an earlier test may serve this one
    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/reasonrank-test-c++",))
    try:
        with pytest.raises(RuntimeError, match="pass compile=False"):
            TransformersBackend(str(tiny_model_dir), dtype="float32", device="cpu", compile=True)
    finally:
        torch._dynamo.reset()
