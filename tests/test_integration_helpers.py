"""The helpers the framework adapters share (reasonrank.integration), model-free: ScriptedBackend stands in."""

from __future__ import annotations

import copy
import threading
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonrank import ReasoningReranker, RerankResult, available_backends
from reasonrank.integration import (
    EMPTY_KEY,
    METADATA_KEYS,
    MODES,
    SETTINGS,
    check_backend,
    deepcopy_memo,
    instance_settings,
    judged_texts,
    result_metadata,
    with_empty_last,
)
from reasonrank.testing import ScriptedBackend

QUERY = "what is bm25"


def _result(index: int, text: str, score: float, rank: int | None = None) -> RerankResult:
    return RerankResult(index=index, id=f"id{index}", text=text, score=score, label=1, label_probs=(0.5, 0.5),
                        explanation="why", rank=rank)


class NamedModelBackend(ScriptedBackend):
    name = "named"
    model_name = "org/judge-1b"


@pytest.fixture
def scripted() -> ReasoningReranker:
    return ReasoningReranker(backend=ScriptedBackend(), mode="direct")


def test_metadata_keys_and_modes():
    assert METADATA_KEYS == ("reasonrank_label", "reasonrank_explanation", "reasonrank_parse_ok")
    assert EMPTY_KEY == "reasonrank_empty" and EMPTY_KEY not in METADATA_KEYS  # written on empty items only
    assert MODES == ("reasoning", "direct")
    assert SETTINGS == ("model", "backend", "mode")


def test_result_metadata_flags_only_items_without_text():
    judged = _result(0, "BM25 is a ranking function", 0.7)
    assert result_metadata(judged) == {"reasonrank_label": 1, "reasonrank_explanation": "why",
                                       "reasonrank_parse_ok": True}
    for blank in ("", " ", "\n\t "):
        empty = RerankResult(index=0, id=None, text=blank, score=0.0, label=0, label_probs=())
        meta = result_metadata(empty)
        assert list(meta) == [*METADATA_KEYS, EMPTY_KEY] and meta[EMPTY_KEY] is True


def test_check_backend_accepts_registered_names_and_lists_them_otherwise():
    for name in available_backends():
        check_backend(name)
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; choose one of \[.*\] or register one with "
                                         r"reasonrank\.register_backend") as err:
        check_backend("torch")
    assert all(repr(name) in str(err.value) for name in available_backends())


def test_judged_texts_drops_empty_and_whitespace_only_texts():
    assert judged_texts(["a", "", " ", "\n\t", "b c", " d "]) == ["a", "b c", " d "]
    assert judged_texts([]) == [] and judged_texts(["", " "]) == []


def test_with_empty_last_maps_indices_back_and_appends_empty_texts_in_input_order():
    texts = ["first", "", "second", "  ", "third"]
    ranked = [_result(2, "third", 0.9, rank=1), _result(0, "first", 0.5, rank=2), _result(1, "second", 0.1, rank=3)]
    out = with_empty_last(ranked, texts, top_k=None)
    assert [(r.index, r.rank, r.score) for r in out] == [(4, 1, 0.9), (0, 2, 0.5), (2, 3, 0.1), (1, 4, 0.0),
                                                         (3, 5, 0.0)]
    assert all(texts[r.index] == r.text for r in out)
    assert out[0] == replace(ranked[0], index=4)  # only the index changes
    for r in out[3:]:
        assert (r.id, r.label, r.label_probs, r.explanation, r.parse_ok) == (None, 0, (), None, True)
    assert [r.index for r in with_empty_last(ranked, texts, top_k=4)] == [4, 0, 2, 1]
    assert [r.index for r in with_empty_last(ranked[:2], texts, top_k=2)] == [4, 0]  # top_k reached: no empties
    assert with_empty_last([], ["", " "], top_k=1) == [RerankResult(index=0, id=None, text="", score=0.0, label=0,
                                                                    label_probs=(), rank=1)]
    assert with_empty_last([], [], top_k=None) == []


@given(st.lists(st.sampled_from(["", " ", "doc a", "doc b", "\n"]), max_size=12), st.randoms(),
       st.one_of(st.none(), st.integers(min_value=1, max_value=14)))
def test_with_empty_last_is_a_ranking_of_all_texts(texts, rnd, top_k):
    judged = [i for i, t in enumerate(texts) if t.strip()]
    order = list(range(len(judged)))
    rnd.shuffle(order)
    order = order[:top_k] if top_k is not None else order
    ranked = [_result(j, judged_texts(texts)[j], 1.0 - k / 20, rank=k + 1) for k, j in enumerate(order)]
    out = with_empty_last(ranked, texts, top_k)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    assert [r.index for r in out] == [judged[j] for j in order] + empty[: len(out) - len(order)]
    assert len(out) == (len(texts) if top_k is None else min(top_k, len(texts)))
    assert [r.rank for r in out] == list(range(1, len(out) + 1))
    assert all(result_metadata(r).get(EMPTY_KEY, False) == (not texts[r.index].strip()) for r in out)


def test_judged_texts_and_with_empty_last_around_a_reranker(scripted):
    texts = ["BM25 is a ranking function", "", "cats sit on mats", " "]
    out = with_empty_last(scripted.rank(QUERY, judged_texts(texts), top_k=3), texts, top_k=3)
    core = scripted.rank(QUERY, ["BM25 is a ranking function", "cats sit on mats"])
    assert [(r.index, r.score) for r in out[:2]] == [({0: 0, 1: 2}[r.index], r.score) for r in core]
    assert (out[2].index, out[2].score, result_metadata(out[2])[EMPTY_KEY]) == (1, 0.0, True)
    assert len(out) == 3


def test_instance_settings_reports_the_requested_settings(scripted):
    assert instance_settings(scripted, model=None, backend=None, mode=None) == {
        "model": "scripted", "backend": "scripted", "mode": "direct"}  # no model_name: the backend's description
    assert instance_settings(scripted, model=None, mode=None) == {"model": "scripted", "mode": "direct"}
    assert instance_settings(scripted) == {}
    named = ReasoningReranker(backend=NamedModelBackend(), mode="reasoning")
    assert instance_settings(named, model="org/judge-1b", backend="named", mode="reasoning") == {
        "model": "org/judge-1b", "backend": "named", "mode": "reasoning"}  # agreeing explicit values are fine


@pytest.mark.parametrize(("key", "value", "own"), [("model", "other/model", "org/judge-1b"),
                                                    ("backend", "openai", "named"), ("mode", "direct", "reasoning")])
def test_instance_settings_rejects_a_conflicting_setting_naming_the_fix(key, value, own):
    named = ReasoningReranker(backend=NamedModelBackend(), mode="reasoning")
    with pytest.raises(ValueError) as err:
        instance_settings(named, **{key: value})
    assert str(err.value) == (f"{key}={value!r} conflicts with the given reranker, whose {key} is {own!r}: drop "
                              f"{key}= (the reranker's own is used) or pass a reranker built with {key}={value!r}")


def test_instance_settings_rejects_unknown_setting_names(scripted):
    with pytest.raises(TypeError, match=r"unknown settings \['device'\]; choose from \['model', 'backend', 'mode'\]"):
        instance_settings(scripted, device="cpu")


class _Adapter:
    """The shape of a pydantic adapter: settings, a lock and a (lazily built) reranker."""

    def __init__(self, reranker: object | None) -> None:
        self.reranker, self.lock, self.settings = reranker, threading.Lock(), {"top_k": 3}

    def __deepcopy__(self, memo: dict[int, object] | None = None) -> _Adapter:
        memo = deepcopy_memo(memo, reranker=self.reranker, lock=self.lock)
        clone = _Adapter.__new__(_Adapter)
        clone.__dict__ = copy.deepcopy(self.__dict__, memo)
        return clone


def test_deepcopy_memo_shares_the_reranker_and_renews_the_lock(scripted):
    adapter = _Adapter(scripted)
    clone = copy.deepcopy(adapter)
    assert clone.reranker is scripted  # a loaded model is shared, not copied
    assert clone.lock is not adapter.lock and not clone.lock.locked()
    assert clone.settings == adapter.settings and clone.settings is not adapter.settings
    lazy = copy.deepcopy(_Adapter(None))  # not built yet: the copy builds its own on first use
    assert lazy.reranker is None
    nested = copy.deepcopy({"a": adapter, "b": adapter})  # inside a larger structure (a retriever, a pipeline)
    assert nested["a"] is nested["b"] and nested["a"].reranker is scripted
    memo: dict[int, object] = {}
    assert deepcopy_memo(memo, reranker=None, lock=adapter.lock) is memo  # the caller's memo is extended
