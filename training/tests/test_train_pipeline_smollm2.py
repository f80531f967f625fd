"""Every stage on the real SmolLM2-135M-Instruct (safetensors), 2 steps each: plumbing on a pretrained LM.

SmolLM2 is a weak judge: these tests assert behaviour (weights change, exports load and rank, files and
metadata), never ranking quality.
"""

from __future__ import annotations

import json

import pytest
from reasonrank_train.evaluate import run_eval
from reasonrank_train.export import run_export
from reasonrank_train.generate import run_generate
from reasonrank_train.modeling import read_meta

from reasonrank import ReasoningReranker

pytestmark = pytest.mark.slow

TRAIN = {"use_cpu": True, "logging_steps": 1, "save_strategy": "no", "max_doc_tokens": 64, "seed": 0,
         "max_steps": 2}


@pytest.fixture(scope="module")
def smol_sft(smollm2_model_dir, explained_file, tmp_path_factory, cfg):
    from reasonrank_train.sft import run_sft

    out = tmp_path_factory.mktemp("smol") / "sft"
    return run_sft(cfg("sft", model=str(smollm2_model_dir), train_file=str(explained_file), output_dir=str(out),
                       mode="reasoning", per_device_train_batch_size=2, learning_rate=1e-4, max_length=512,
                       max_examples=4, **TRAIN))


def test_smollm2_teacher_generates_interank_records(smollm2_model_dir, tiny_beir, tmp_path, cfg):
    out = tmp_path / "teacher.jsonl"
    stats = run_generate(cfg("generate", corpus=str(tiny_beir), output=str(out), source="teacher",
                             teacher_model=str(smollm2_model_dir), teacher_backend="transformers",
                             teacher_options={"device": "cpu"}, candidates_per_query=2, max_queries=1,
                             max_new_tokens=32, max_doc_tokens=64, keep_failures=True, progress=False))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert stats.written == len(rows) >= 1 and stats.queries == 1
    assert all(r["qid"] == "q1" and r["label"] in (0, 1, 2) and r["explanation"].strip() for r in rows)


def test_smollm2_sft_changes_weights_exports_and_ranks(smol_sft, smollm2_model_dir, tmp_path, cfg, changed):
    assert changed(smollm2_model_dir, smol_sft)
    res = run_export(cfg("export", model=str(smol_sft), output_dir=str(tmp_path / "export"), verify=False))
    assert read_meta(res.path)["mode"] == "reasoning"
    with ReasoningReranker(res.path, mode="reasoning", device="cpu", max_new_tokens=24) as rr:
        ranked = rr.rank("how do vaccines train the immune system",
                         ["Vaccines show the immune system a harmless piece of a pathogen.", "Cats sleep a lot."])
    assert sorted(r.index for r in ranked) == [0, 1]
    assert all(r.raw_output.startswith("Explanation:") and 0.0 <= r.score <= 1.0 for r in ranked)


def test_smollm2_grpo_direct_changes_weights(smollm2_model_dir, qrels_file, tmp_path, cfg, changed):
    from reasonrank_train.grpo import run_grpo

    out = run_grpo(cfg("grpo", model=str(smollm2_model_dir), train_file=str(qrels_file),
                       output_dir=str(tmp_path / "grpo"), mode="direct", per_device_train_batch_size=4,
                       num_generations=4, learning_rate=1e-5, temperature=1.5, max_examples=6, **TRAIN))
    assert changed(smollm2_model_dir, out)
    with ReasoningReranker(str(out), mode="direct", device="cpu") as rr:
        assert len(rr.rank("why is the sky blue", ["Air scatters blue light.", "Bread rises."])) == 2


def test_smollm2_score_learn_changes_weights_and_evaluates(smollm2_model_dir, qrels_file, tiny_beir, tmp_path, cfg,
                                                           changed):
    from reasonrank_train.score_learn import run_score_learn

    out = run_score_learn(cfg("score-learn", model=str(smollm2_model_dir), train_file=str(qrels_file),
                              output_dir=str(tmp_path / "sl"), list_size=3, max_steps=2, learning_rate=1e-5,
                              use_cpu=True, max_doc_tokens=64))
    assert changed(smollm2_model_dir, out)
    res = run_export(cfg("export", model=str(out), output_dir=str(tmp_path / "exp")))
    assert res.mode == "direct" and res.verified_score is not None
    result = run_eval(cfg("eval", model=res.path, collection=str(tiny_beir), k=3, max_queries=1, progress=False,
                          backend_options={"device": "cpu"}))
    assert result.queries == 1 and result.mode == "direct"
    assert 0.0 <= result.reranked["nDCG@10"] <= 1.0
