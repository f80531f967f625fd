"""Reasoning mode at engine speed (transformers backend): a stop check and a label recorder whose per-step cost does
not grow with the generated length, and the forced verdict of an output without one read by continuing the
generation's KV cache instead of re-prefilling prompt + output in a second pass.

The tiny random model writes no verdict, so every output needs the forced verdict; a small bias on the
end-of-sequence token (``sequence_bias``) makes some rows stop early while others run to ``max_new_tokens``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import reasonrank.backends.hf as hf
from reasonrank import ReasoningReranker
from reasonrank.backends import Generation, LabelSpec, LocateLabel, Prompt
from reasonrank.backends.tokenization import continuation_chunk, verdict_finder, verdict_reached
from reasonrank.testing import ScriptedBackend

QUERY = "what is bm25 ranking"
DOCS = ["BM25 is a ranking function used by search engines.", "The cat sat on the mat.", "x",
        "Photosynthesis converts light into chemical energy in plants. " * 3, "Lucene uses BM25 by default.",
        "Vaccines train the immune system."]
SPEC = LabelSpec(labels=(0, 1, 2))


def _backend(tiny_model_dir: Path, dtype: str, **kwargs: Any) -> hf.TransformersBackend:
    base = hf.TransformersBackend(str(tiny_model_dir), dtype=dtype)
    eos = base.tokenizer.eos_token_id
    return hf.TransformersBackend(base.model, tokenizer=base.tokenizer,
                                  generation_kwargs={"sequence_bias": {(eos,): 3.0}}, **kwargs)


@pytest.fixture(scope="module")
def fp32(tiny_model_dir: Path) -> hf.TransformersBackend:
    return _backend(tiny_model_dir, "float32", batch_size=8)


def _head(prompt: Prompt, text: str) -> Prompt:
    """The forced-verdict prompt of the re-prefill path (reasonrank/planning.py)."""
    return Prompt(prompt.messages, (prompt.assistant_prefix + text).rstrip() + "\n" + SPEC.marker)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-4), ("bfloat16", 6e-2)])
def test_forced_verdict_from_the_cache_equals_a_re_prefill(tiny_model_dir: Path, dtype: str, tol: float) -> None:
    """forced_logprobs against label_logprobs of the forced prompt, over rows of different prompt lengths, rows
    stopped at EOS and rows that ran to max_new_tokens, in one batch and in several. Measured max |diff|: fp32
    3.3e-6 (bound 1e-4); bf16 0.009 (0.021 with another query, 0.022 on SmolLM2; bound 6e-2: the cached keys come
    from step-by-step decoding, the re-prefill computes them in one pass and another batch shape, and bf16 rounds
    the two differently)."""
    be = _backend(tiny_model_dir, dtype, batch_size=8)
    rr = ReasoningReranker(backend=be, mode="reasoning")
    prompts = [rr._prompt(QUERY, d) for d in DOCS]
    lengths = {len(s) for s in be.generation_inputs(prompts, 0)}
    assert len(lengths) == len(DOCS)  # every row has its own prompt length: left padding differs per row
    for batch_size, new in ((8, 12), (2, 16)):
        be.batch_size = batch_size
        gens = be.generate(prompts, SPEC, locate=rr._locate, max_new_tokens=new)
        counts = [g.num_tokens for g in gens]
        assert new in counts and min(counts) < new, counts  # rows at max_new_tokens and rows stopped at EOS
        assert all(g.forced_logprobs and g.label_logprobs is None for g in gens)
        ref = be.label_logprobs([_head(p, g.text) for p, g in zip(prompts, gens)], SPEC)
        diff = max(abs(g.forced_logprobs[k] - r[k]) for g, r in zip(gens, ref) for k in r)
        assert diff < tol, (batch_size, new, diff)


def test_whitespace_and_empty_outputs_are_continued_like_the_re_prefill(fp32: hf.TransformersBackend) -> None:
    """An output ending in whitespace (which the forced prompt drops) and an empty one (EOS first), steered by
    ``sequence_bias`` on the assistant prefix's last token: the continuation masks the dropped tokens and reads
    what the re-prefill reads. An assistant prefix ending in a space with an empty output is the case it cannot
    continue (the forced prompt strips the prompt's own last token): forced_logprobs stays None there."""
    tok = fp32.tokenizer
    one = {t: tok.encode(t, add_special_tokens=False) for t in (" ", "\n", "q", "z", " c")}
    assert all(len(v) == 1 for v in one.values())
    space, newline, q, z, c = (v[0] for v in one.values())
    eos = tok.eos_token_id
    be = hf.TransformersBackend(fp32.model, tokenizer=tok, generation_kwargs={"sequence_bias": {
        (q, eos): 100.0, (z, c): 100.0, (z, c, space): 100.0, (c, space, newline): 100.0,
        (space, newline, eos): 100.0}})
    rr = ReasoningReranker(backend=be, mode="reasoning")
    prompts = [dataclasses.replace(rr._prompt(QUERY, d), assistant_prefix=a)
               for d, a in ((DOCS[0], "Explanation: q"), (DOCS[1], "Explanation: z"), (DOCS[3], "Explanation:"))]
    gens = be.generate(prompts, SPEC, locate=rr._locate, max_new_tokens=10)
    assert (gens[0].text, gens[1].text) == ("", " c \n"), gens
    assert all(g.forced_logprobs for g in gens)
    ref = be.label_logprobs([_head(p, g.text) for p, g in zip(prompts, gens)], SPEC)
    assert max(abs(g.forced_logprobs[k] - r[k]) for g, r in zip(gens, ref) for k in r) < 1e-4
    stripped = hf.TransformersBackend(fp32.model, tokenizer=tok, generation_kwargs={"sequence_bias": {(space, eos): 100.0}})
    prompts[0] = dataclasses.replace(prompts[0], assistant_prefix="Explanation: ")
    gens = stripped.generate(prompts, SPEC, locate=rr._locate, max_new_tokens=10)
    assert gens[0].text == "" and gens[0].forced_logprobs is None and gens[2].forced_logprobs


class _Counting(hf.TransformersBackend):
    """The transformers backend, counting forced prompts; ``second_pass`` drops ``forced_logprobs`` so that the
    reranker forces every verdict in a second pass (the path before the KV-cache continuation)."""

    second_pass = False
    label_prompts = 0

    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        self.label_prompts += len(prompts)
        return super().label_logprobs(prompts, spec)

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        gens = super().generate(prompts, spec, locate=locate, max_new_tokens=max_new_tokens)
        return [dataclasses.replace(g, forced_logprobs=None) for g in gens] if self.second_pass else gens


def test_reasoning_scores_equal_the_second_pass_path(fp32: hf.TransformersBackend) -> None:
    """Reranker scores and label probabilities with the cached continuation equal the second-pass path (fp32;
    measured max |diff| 4.3e-7 in score and 4.5e-7 in label probability, bound 1e-5); no label_logprobs call is left."""
    new, old = (_Counting(fp32.model, tokenizer=fp32.tokenizer, batch_size=4,
                          generation_kwargs=fp32.generation_kwargs) for _ in range(2))
    old.second_pass = True
    a, b = (ReasoningReranker(backend=be, mode="reasoning", max_new_tokens=12).score(QUERY, DOCS)
            for be in (new, old))
    assert new.label_prompts == 0 and old.label_prompts == len(DOCS)
    assert [r.raw_output for r in a] == [r.raw_output for r in b]
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5)
    for x, y in zip(a, b):
        assert x.label_probs == pytest.approx(y.label_probs, abs=1e-5)
        assert (x.label, x.parse_ok, x.error) == (y.label, y.parse_ok, y.error) and not x.parse_ok
    reported = ReasoningReranker(backend=new, mode="reasoning", max_new_tokens=6, on_parse_error="report")
    assert all(r.error and r.error.startswith("no valid verdict") for r in reported.score(QUERY, DOCS[:2]))


def test_planner_uses_the_backends_forced_verdict() -> None:
    """Model-free: a generation carrying forced_logprobs is scored from them; one without is forced in a second
    pass; an output with a verdict keeps its own label log-probabilities."""

    class Own(ScriptedBackend):
        def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                     max_new_tokens: int) -> list[Generation]:
            gens = super().generate(prompts, spec, locate=locate, max_new_tokens=max_new_tokens)
            own = {0: math.log(0.1), 1: math.log(0.1), 2: math.log(0.8)}
            return [dataclasses.replace(g, forced_logprobs=own) if k % 2 == 0 else g for k, g in enumerate(gens)]

    be = Own(" no verdict here")
    res = ReasoningReranker(backend=be).score(QUERY, ["a", "b", "c"])
    assert len(be.label_prompts) == 1 and be.label_prompts[0].assistant_prefix.endswith("here\nRelevance:")
    assert [p for r in res for p in r.label_probs] == pytest.approx([0.1, 0.1, 0.8, 0.7, 0.2, 0.1, 0.1, 0.1, 0.8])
    assert not any(r.parse_ok for r in res)
    verdict = Own(" It defines BM25.\nRelevance: 1", {0: math.log(0.2), 1: math.log(0.6), 2: math.log(0.2)})
    assert ReasoningReranker(backend=verdict).score(QUERY, ["a"])[0].label_probs == pytest.approx((0.2, 0.6, 0.2))
    assert verdict.label_prompts == []


def test_continuation_chunk_cases() -> None:
    assert continuation_chunk([1], [4, 5, 6], [1, 4, 5, 6, 7], cached=3) == (3, [7])        # all cached
    assert continuation_chunk([1], [4, 5, 6], [1, 4, 5, 6, 7], cached=2) == (2, [6, 7])     # last never fed
    assert continuation_chunk([1], [4, 5, 6], [1, 4, 9, 7], cached=2) == (1, [9, 7])        # retokenised
    assert continuation_chunk([1], [], [1, 7, 8], cached=0) == (0, [7, 8])                  # empty output
    assert continuation_chunk([1], [7, 8], [1, 7, 8], cached=2) == (1, [8])                 # chunk never empty
    assert continuation_chunk([1, 2], [4], [1], cached=1) is None


def _old_hooks(tf: Any, torch: Any, tok: Any, index: Any, verdict: Any) -> tuple[Any, Any]:
    """The hooks before this change: a full-vocabulary log-softmax per step, and a stop check that converts the
    whole tail from 12 tokens before the prompt's end to Python lists at every step."""
    label_ids = set(index.tolist())

    class Recorder(tf.LogitsProcessor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.steps: list[Any] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            self.steps.append(torch.log_softmax(scores.float(), dim=-1).index_select(-1, index))
            return scores

    class VerdictStop(tf.StoppingCriteria):  # type: ignore[misc]
        prompt_len: int | None = None

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            if self.prompt_len is None:  # first call: one token generated
                self.prompt_len = input_ids.shape[1] - 1
            done = [verdict_reached(tok, row, label_ids, verdict)
                    for row in input_ids[:, max(0, self.prompt_len - 12):].tolist()]
            return torch.tensor(done, device=input_ids.device)

    return Recorder(), VerdictStop()


def test_stop_check_and_recorder_keep_generations(fp32: hf.TransformersBackend,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same texts, token counts and label log-probabilities as the previous hooks, on prompts where the
    model writes a verdict (biased towards ' 2' after the marker's ':'), stops at EOS, or runs on."""
    tok = fp32.tokenizer
    colon = tok.encode("Relevance:", add_special_tokens=False)[-1]
    spacer, cands = fp32.label_tokens(SPEC)
    be = hf.TransformersBackend(fp32.model, tokenizer=tok, batch_size=3, generation_kwargs={"sequence_bias": {
        (colon, *spacer): 30.0, (*spacer, cands[2][0]): 30.0, (tok.eos_token_id,): 3.0}})
    rr = ReasoningReranker(backend=be, mode="reasoning")
    prompts = [rr._prompt(QUERY, d) for d in DOCS]
    prompts += [dataclasses.replace(p, assistant_prefix="Explanation: fine.\nRelevance:") for p in prompts[:3]]

    def locate(text: str) -> int | None:  # those prefixes end at the marker: the output starts with the label
        return 1 if text == " 2" else rr._locate(text)

    new = be.generate(prompts, SPEC, locate=locate, max_new_tokens=10)
    monkeypatch.setattr(hf, "generation_hooks", _old_hooks)
    old = be.generate(prompts, SPEC, locate=locate, max_new_tokens=10)
    assert [(g.text, g.num_tokens) for g in new] == [(g.text, g.num_tokens) for g in old]
    assert sum(g.label_logprobs is not None for g in new) >= 3 and sum(g.num_tokens == 10 for g in new) >= 1
    for g, h in zip(new, old):
        assert (g.label_logprobs is None) == (h.label_logprobs is None)
        if g.label_logprobs is not None:
            assert g.label_logprobs == pytest.approx(h.label_logprobs, abs=1e-5)


def test_generation_hooks_against_the_previous_formulas(fp32: hf.TransformersBackend) -> None:
    """The stop check on crafted rows (verdict inside the generation, verdict whose marker is in the prompt, a
    label token without a marker, rows shorter than 12 tokens) and the recorder on random scores (fp32, bf16)."""
    torch, tok = fp32.torch, fp32.tokenizer
    spacer, cands = fp32.label_tokens(SPEC)
    index = torch.tensor([t for ts in cands.values() for t in ts])
    rec, stop = hf.generation_hooks(fp32.transformers, torch, tok, index, verdict_finder(SPEC))
    ref_rec, ref_stop = _old_hooks(fp32.transformers, torch, tok, index, verdict_finder(SPEC))
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    texts = ["Explanation: long enough text here. Relevance: 2", "Relevance:", "some words and 1",
             "x Relevance: 0 and more words after it", "2", "Relevance: 2"]
    rows = [enc(t) for t in texts]
    rows[1] = rows[1] + spacer + cands[1][:1]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[fp32.pad_id] * (width - len(r)) + r for r in rows])
    for prompt_len in (width - 1, width - 3):
        ref_stop.prompt_len = prompt_len
        assert stop(ids, None).tolist() == ref_stop(ids, None).tolist()
    assert stop(ids, None).tolist() == [True, True, False, False, False, True]
    for dtype in (torch.float32, torch.bfloat16):
        scores = (torch.randn(3, len(tok), generator=torch.Generator().manual_seed(0)) * 8).to(dtype)
        rec(None, scores)
        ref_rec(None, scores)
        assert torch.allclose(rec.steps[-1], ref_rec.steps[-1], atol=1e-5)


@pytest.mark.slow
def test_smollm2_continues_all_but_the_last_token(smollm2_direct: ReasoningReranker,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real tokenizer and real prose (SmolLM2, fp32) the forced prompt repeats the generated tokens, so the
    pass keeps every cached one and feeds only the never-fed last token and "\\n" + marker + spacer (measured
    max |diff| against the re-prefill 2.4e-6, bound 1e-4)."""
    be = smollm2_direct.backend
    assert isinstance(be, hf.TransformersBackend)
    kept: list[tuple[int, int, list[int]]] = []

    def recorded(prompt: Sequence[int], generated: Sequence[int], target: Sequence[int],
                 cached: int) -> tuple[int, list[int]] | None:
        got = continuation_chunk(prompt, generated, target, cached)
        assert got is not None
        kept.append((len(generated), got[0], got[1]))
        return got

    monkeypatch.setattr(hf, "continuation_chunk", recorded)
    rr = ReasoningReranker(backend=be, mode="reasoning")
    docs = ["BM25 scores documents by term frequency and inverse document frequency.", "The cat sat on the mat."]
    prompts = [rr._prompt("how does bm25 score documents", d) for d in docs]
    gens = be.generate(prompts, SPEC, locate=rr._locate, max_new_tokens=16)
    suffix = be.tokenizer.encode("\n" + SPEC.marker, add_special_tokens=False) + be.label_tokens(SPEC)[0]
    assert len(kept) == 2 and all(g.text == g.text.rstrip() and g.num_tokens == 16 for g in gens), gens
    assert all(k == n - 1 and chunk[1:] == suffix for n, k, chunk in kept), kept
    ref = be.label_logprobs([_head(p, g.text) for p, g in zip(prompts, gens)], SPEC)
    diff = max(abs(g.forced_logprobs[k] - r[k]) for g, r in zip(gens, ref) for k in r)
    assert diff < 1e-4, diff
