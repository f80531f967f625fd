"""Fixtures of the training tests: the bundled tiny collection, labelled data, and weight comparison."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TINY_BEIR = Path(__file__).resolve().parents[1] / "configs" / "data" / "tiny-beir"


def changed_tensors(before: str | Path, after: str | Path) -> list[str]:
    """Names of the weights that differ between two saved (safetensors) model directories."""
    import torch
    from safetensors.torch import load_file

    def weights(d: str | Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in sorted(Path(d).glob("*.safetensors")):
            out.update(load_file(str(f)))
        assert out, f"no safetensors weights in {d}"
        return out

    a, b = weights(before), weights(after)
    common = sorted(set(a) & set(b))
    assert common, f"{before} and {after} share no weight names"
    return [k for k in common if a[k].shape != b[k].shape or not torch.equal(a[k].float(), b[k].float())]


def build(stage: str, **values: Any) -> Any:
    from reasonrank_train.config import build_config

    return build_config(stage, values)


@pytest.fixture(scope="session")
def tiny_beir() -> Path:
    return TINY_BEIR


@pytest.fixture(scope="session")
def qrels_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gold-labelled pairs of the tiny collection's train split (generate, source: qrels)."""
    from reasonrank_train.generate import run_generate

    out = tmp_path_factory.mktemp("data") / "qrels.jsonl"
    stats = run_generate(build("generate", corpus=str(TINY_BEIR), output=str(out), source="qrels",
                               candidates_per_query=3, negatives="bm25", progress=False))
    assert stats.written == 12 and out.is_file()
    return out


@pytest.fixture(scope="session")
def explained_file(qrels_file: Path) -> Path:
    """The gold pairs with a short explanation per label (a rule-based stand-in teacher for SFT data)."""
    words = {0: "is about something else and does not address", 1: "mentions the topic but does not answer",
             2: "directly answers"}
    out = qrels_file.with_name("explained.jsonl")
    with qrels_file.open() as src, out.open("w") as dst:
        for line in src:
            row = json.loads(line)
            row["explanation"] = f"The document on {row['title'].lower()} {words[row['label']]} the query."
            row["source"] = "teacher"
            dst.write(json.dumps(row) + "\n")
    return out


@pytest.fixture(scope="session")
def changed() -> Any:
    """``changed(dir_a, dir_b)`` -> names of the weights that differ (importlib mode: helpers via fixtures)."""
    return changed_tensors


@pytest.fixture(scope="session")
def cfg() -> Any:
    """``cfg(stage, **options)`` -> the stage's validated config."""
    return build
