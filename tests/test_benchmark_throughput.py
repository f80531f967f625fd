"""The throughput benchmark script runs for real (tiny model; a random Qwen2.5 architecture when slow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("rr_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_throughput_rows_and_batching_ratio(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    bench = _load()
    out = tmp_path / "rows.json"
    assert bench.main(["--model", str(tiny_model_dir), "--modes", "direct,reasoning", "--candidates", "3,5",
                       "--doc-tokens", "16", "--max-new-tokens", "4", "--naive", "--naive-docs", "2",
                       "--batch-size", "4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["candidates"]) for r in rows] == [("direct", 3), ("direct", 5), ("reasoning", 3),
                                                            ("reasoning", 5)]
    for r in rows:
        assert r["docs_per_s"] == pytest.approx(r["candidates"] / r["seconds"], rel=0.01)
        assert r["batching_speedup"] == pytest.approx(r["docs_per_s"] / r["naive_docs_per_s"], rel=0.01)
        assert (r["gen_tokens_per_s"] is None) == (r["mode"] == "direct")
    table = capsys.readouterr().out
    assert "batch speed-up" in table and table.count("| transformers |") == 4


def test_variants_side_by_side_with_ratios_and_explain_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Named configurations in one run; each workload's fastest is 1.00x; explainN explains the top N."""
    bench = _load()
    out = tmp_path / "rows.json"
    assert bench.main(["--model", str(tiny_model_dir), "--modes", "direct,explain2", "--candidates", "4",
                       "--doc-tokens", "16", "--max-new-tokens", "4", "--batch-size", "4", "--json", str(out),
                       "--variant", "bf16=transformers:dtype=bfloat16",
                       "--variant", "fp32-whole=transformers:dtype=float32,reuse_prefix=false"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["variant"], r["mode"]) for r in rows] == [("bf16", "direct"), ("bf16", "explain2"),
                                                         ("fp32-whole", "direct"), ("fp32-whole", "explain2")]
    assert max(r["vs_fastest"] for r in rows) == 1.0
    for r in rows:
        best = max(o["docs_per_s"] for o in rows)
        assert r["vs_fastest"] == pytest.approx(r["docs_per_s"] / best, abs=2e-3)
        assert (r["gen_tokens_per_s"] is not None) == (r["mode"] == "explain2")
    assert bench.parse_variant("x=vllm:engine_kwargs={\"block_size\": 16}") == ("x", "vllm", {"engine_kwargs": {"block_size": 16}})
    with pytest.raises(SystemExit, match="NAME=BACKEND"):
        bench.parse_variant("transformers")
    with pytest.raises(SystemExit, match="explainN"):
        bench.main(["--model", str(tiny_model_dir), "--modes", "explainx"])


def test_synthetic_documents_are_cut_to_the_requested_length(tiny_model_dir: Path) -> None:
    bench = _load()
    docs = bench.make_docs(4)
    assert len(set(docs)) == 4
    from reasonrank import ReasoningReranker

    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", max_doc_tokens=32)
    assert all(r.truncated for r in rr.score(bench.QUERY, docs))


def test_backend_opt_parsing() -> None:
    bench = _load()
    assert bench.parse_opts(["openai.base_url=http://127.0.0.1:1/v1", "vllm.engine_kwargs={\"x\": 1}"]) == {
        "openai": {"base_url": "http://127.0.0.1:1/v1"}, "vllm": {"engine_kwargs": {"x": 1}}}
    with pytest.raises(SystemExit, match="BACKEND.KEY=VALUE"):
        bench.parse_opts(["base_url=x"])


@pytest.mark.slow
def test_random_architecture_variant(tmp_path: Path) -> None:
    """The GPU variant's code path on CPU: a random-initialised Qwen2.5-0.5B (no weights needed)."""
    bench = _load()
    arch = bench.random_arch_dir("qwen2.5-0.5b", tmp_path)
    cfg = json.loads((arch / "config.json").read_text())
    assert (cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"]) == ("qwen2", 896, 24)
    out = tmp_path / "rows.json"
    assert bench.main(["--random-arch", "qwen2.5-0.5b", "--modes", "direct", "--candidates", "2",
                       "--doc-tokens", "16", "--warmup", "1", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["candidates"] == 2 and row["docs_per_s"] > 0
