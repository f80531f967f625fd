"""docs/backends.md, "Writing a backend": the example backend runs as written, through both modes, and the
reranker keeps the contract of ``label_logprobs`` replies stated there."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import pytest

from reasonrank import ReasoningReranker
from reasonrank.backends import LabelScores
from reasonrank.testing import ScriptedBackend

DOC = Path(__file__).resolve().parents[1] / "docs" / "backends.md"


def test_writing_a_backend_example_runs(capsys) -> None:
    section = DOC.read_text(encoding="utf-8").split("## Writing a backend", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the documented example, verbatim
    assert capsys.readouterr().out.strip() == "[1, 0]"
    rr = ns["ReasoningReranker"]("any", backend="overlap", mode="reasoning", label_scale=(0, 1))
    got = rr.rank("what is bm25", ["cats and dogs", "bm25 is a ranking function"])
    assert [r.index for r in got] == [1, 0] and all(r.parse_ok for r in got)
    assert got[0].explanation == "Word overlap decides." and got[0].label == 1


# ---------------------------------------------------------------- the label_logprobs contract (docs/backends.md)
P = {0: math.log(0.2), 1: math.log(0.8)}


class Replying(ScriptedBackend):
    """Answers label_logprobs with the given replies (one per prompt, or the whole list as given)."""

    def __init__(self, replies, text: str = "") -> None:
        super().__init__(text)
        self.replies = replies

    def label_logprobs(self, prompts, spec):
        self.label_prompts.extend(prompts)
        return self.replies(len(prompts)) if callable(self.replies) else self.replies


def test_a_plain_mapping_and_label_scores_are_the_same_answer() -> None:
    def rr(replies):
        return ReasoningReranker(backend=Replying(replies), mode="direct", label_scale=(0, 1))

    plain = rr([P, {0: 0.0}]).score("q", ["a", "b"])
    typed = rr([LabelScores(P), LabelScores({0: 0.0})]).score("q", ["a", "b"])
    assert plain == typed and plain[0].label_probs == pytest.approx((0.2, 0.8)) and plain[1].label == 0


@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_label_scores_failed_is_a_per_document_error(mode: str) -> None:
    # reasoning: no verdict in the text, so both documents go through the forced label pass
    be = Replying(lambda n: [LabelScores.failed("engine said no")] + [P] * (n - 1), text=" No verdict.")
    rr = ReasoningReranker(backend=be, mode=mode, label_scale=(0, 1))
    ranked = rr.rank("q", ["a", "b"])
    assert [r.index for r in ranked] == [1, 0] and ranked[0].error is None and ranked[0].label == 1
    assert ranked[1].error == "engine said no" and ranked[1].score == 0.0 and rr.stats.errors == 1
    assert asyncio.run(rr.ascore("q", ["a", "b"]))[0].error == "engine said no"


def test_replies_breaking_the_contract_are_clear_errors() -> None:
    def rr(replies):
        return ReasoningReranker(backend=Replying(replies), mode="direct", label_scale=(0, 1))

    with pytest.raises(TypeError, match="mapping or a LabelScores, got list"):
        rr([[0.2, 0.8]]).score("q", ["a"])
    with pytest.raises(ValueError, match=r"label_logprobs answered 1 of 2 prompts"):
        rr([P]).score("q", ["a", "b"])
