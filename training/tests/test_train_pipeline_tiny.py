"""Every stage end-to-end on the tiny random Llama (CPU, seconds per step): real training, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reasonrank_train.cli import main
from reasonrank_train.data import read_examples, render_example, sft_rows
from reasonrank_train.export import run_export
from reasonrank_train.generate import run_generate
from reasonrank_train.modeling import load_tokenizer, read_meta

from reasonrank import ReasoningReranker

TRAIN = {"use_cpu": True, "logging_steps": 1, "save_strategy": "no", "max_doc_tokens": 64, "seed": 0}


@pytest.fixture(scope="module")
def sft_direct(tiny_model_dir, qrels_file, tmp_path_factory, cfg):
    """Direct-mode SFT long enough (12 steps, high LR) that the random model starts writing labels."""
    from reasonrank_train.sft import run_sft

    out = tmp_path_factory.mktemp("sft") / "direct"
    return run_sft(cfg("sft", model=str(tiny_model_dir), train_file=str(qrels_file), output_dir=str(out),
                       mode="direct", max_steps=12, per_device_train_batch_size=4, learning_rate=1e-2, **TRAIN))


@pytest.fixture(scope="module")
def sft_reasoning(tiny_model_dir, explained_file, tmp_path_factory, cfg):
    from reasonrank_train.sft import run_sft

    out = tmp_path_factory.mktemp("sft") / "reasoning"
    return run_sft(cfg("sft", model=str(tiny_model_dir), train_file=str(explained_file), output_dir=str(out),
                       mode="reasoning", max_steps=12, per_device_train_batch_size=4, learning_rate=1e-2,
                       **TRAIN))


def test_generate_with_a_real_teacher_is_resumable_and_deduplicated(tiny_model_dir, tiny_beir, tmp_path, cfg):
    out = tmp_path / "teacher.jsonl"
    opts = {"corpus": str(tiny_beir), "output": str(out), "source": "teacher", "teacher_model": str(tiny_model_dir),
            "teacher_backend": "transformers", "teacher_options": {"device": "cpu"}, "candidates_per_query": 2,
            "max_queries": 2, "max_new_tokens": 8, "keep_failures": True, "progress": False}
    first = run_generate(cfg("generate", **opts))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert first.written == len(rows) > 0 and first.queries == 2
    assert all(r["source"] == "teacher" and r["label"] in (0, 1, 2) and r["explanation"] for r in rows)
    # an interrupted write leaves a partial line: it is dropped and the pair regenerated, nothing duplicated
    out.write_text(out.read_text() + '{"qid": "q2", "doc')
    again = run_generate(cfg("generate", **opts))
    assert again.written == 0 and again.skipped_existing == first.written
    keys = [(r["qid"], r["docid"]) for r in map(json.loads, out.read_text().splitlines())]
    assert len(keys) == len(set(keys)) == first.written
    more = run_generate(cfg("generate", **{**opts, "max_queries": 3}))
    assert more.queries == 1 and more.skipped_existing == first.written


def test_generate_from_qrels_labels_judged_and_negative_pairs(qrels_file):
    rows = [json.loads(x) for x in qrels_file.read_text().splitlines()]
    q1 = {r["docid"]: r["label"] for r in rows if r["qid"] == "q1"}
    assert q1 == {"d01": 2, "d02": 2, "d03": 1}  # judged first, in grade order, capped at 3 per query
    q2 = {r["docid"]: r["label"] for r in rows if r["qid"] == "q2"}
    assert q2 == {"d04": 2, "d05": 1, "d14": 0}
    assert all("explanation" not in r and r["source"] == "qrels" for r in rows)


def test_training_prompts_are_the_rerankers_prompts(tiny_model_dir, explained_file):
    """The SFT prompt + target is exactly what ReasoningReranker sends and parses."""
    from reasonrank.parsing import parse_judgment

    tok = load_tokenizer(str(tiny_model_dir))
    ex = read_examples(explained_file, labels=(0, 1, 2), require_explanations=True)[0]
    rr = ReasoningReranker(str(tiny_model_dir), mode="reasoning", device="cpu", max_doc_tokens=64)
    prompt = rr._prompt(ex.query, rr.backend.truncate(ex.document.prompt_text, 64)[0])
    assert render_example(tok, ex, mode="reasoning", labels=(0, 1, 2), max_doc_tokens=64) == rr.backend.render(prompt)
    row = sft_rows(tok, [ex], mode="reasoning", labels=(0, 1, 2), max_doc_tokens=64)[0]
    j = parse_judgment("Explanation:" + row["completion"])
    assert j.ok and j.label == ex.label and j.explanation == ex.explanation


def test_sft_changes_weights_and_exports_a_loadable_reranker(sft_direct, tiny_model_dir, tmp_path, cfg, changed):
    assert changed(tiny_model_dir, sft_direct)
    meta = read_meta(sft_direct)
    assert meta["mode"] == "direct" and meta["stages"][-1]["steps"] == 12
    res = run_export(cfg("export", model=str(sft_direct), output_dir=str(tmp_path / "export")))
    assert res.mode == "direct" and 0.0 <= res.verified_score <= 1.0
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert "ReasoningReranker" in (tmp_path / "export" / "README.md").read_text()
    with ReasoningReranker(res.path, mode="direct", device="cpu") as rr:
        ranked = rr.rank("why is the sky blue", ["Air scatters blue light.", "Cats sleep a lot.", "Bread rises."])
    assert sorted(r.index for r in ranked) == [0, 1, 2] and [r.rank for r in ranked] == [1, 2, 3]
    assert ranked[0].score >= ranked[-1].score


def test_export_refuses_weights_that_cannot_score(sft_direct, tmp_path, cfg):
    """A stage output whose weights turned NaN loads, but scores nothing: export's check fails loudly."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    broken = tmp_path / "broken"
    shutil.copytree(sft_direct, broken)
    model = AutoModelForCausalLM.from_pretrained(broken)
    with torch.no_grad():
        model.get_output_embeddings().weight.fill_(float("nan"))
    model.save_pretrained(broken)
    with pytest.raises(RuntimeError, match="failed its check.*non-finite"):
        run_export(cfg("export", model=str(broken), output_dir=str(tmp_path / "export")))


def test_sft_lora_adapter_is_merged_by_export(tiny_model_dir, explained_file, tmp_path, cfg, changed):
    from reasonrank_train.sft import run_sft

    out = run_sft(cfg("sft", model=str(tiny_model_dir), train_file=str(explained_file),
                      output_dir=str(tmp_path / "lora"), mode="reasoning", max_steps=2,
                      per_device_train_batch_size=2, learning_rate=5e-2, use_lora=True, lora_r=4, lora_alpha=8,
                      **TRAIN))
    assert (out / "adapter_config.json").is_file()
    res = run_export(cfg("export", model=str(out), output_dir=str(tmp_path / "merged"), verify=False))
    assert changed(tiny_model_dir, res.path)
    with ReasoningReranker(res.path, mode="reasoning", device="cpu", max_new_tokens=8) as rr:
        got = rr.score("how does bread rise", ["Yeast makes gas.", "Volcanoes erupt."])
    assert [r.index for r in got] == [0, 1] and all(r.raw_output.startswith("Explanation:") for r in got)


def test_one_lora_adapter_runs_through_every_stage_and_ships_unmerged(tiny_model_dir, explained_file, qrels_file,
                                                                      tmp_path, cfg, monkeypatch):
    """sft -> grpo -> score-learn continue one adapter; export (merge: false) writes that adapter, which
    ReasoningReranker resolves by merging it onto its base, scoring exactly as the merged export does."""
    import torch
    from reasonrank_train.grpo import run_grpo
    from reasonrank_train.score_learn import run_score_learn
    from reasonrank_train.sft import run_sft
    from safetensors.torch import load_file

    monkeypatch.setenv("REASONRANK_CACHE", str(tmp_path / "cache"))
    lora = {"use_lora": True, "lora_r": 4, "lora_alpha": 8}
    sft = run_sft(cfg("sft", model=str(tiny_model_dir), train_file=str(explained_file), output_dir=str(tmp_path / "s"),
                      mode="reasoning", max_steps=2, per_device_train_batch_size=2, learning_rate=5e-2, **lora,
                      **TRAIN))
    grpo = run_grpo(cfg("grpo", model=str(sft), train_file=str(qrels_file), output_dir=str(tmp_path / "g"),
                        mode="direct", max_steps=1, per_device_train_batch_size=4, num_generations=4,
                        max_completion_length=4, learning_rate=5e-2, temperature=1.5, **lora, **TRAIN))
    score = run_score_learn(cfg("score-learn", model=str(grpo), train_file=str(qrels_file),
                                output_dir=str(tmp_path / "sl"), max_steps=2, group_size=3, learning_rate=5e-2,
                                use_cpu=True, max_doc_tokens=64, clip_labels=True, label_scale=[0, 1], **lora))
    adapters = [load_file(str(d / "adapter_model.safetensors")) for d in (sft, grpo, score)]
    assert adapters[0].keys() == adapters[2].keys(), "later stages must continue the first adapter, not add one"
    assert any(not torch.equal(adapters[0][k], adapters[2][k]) for k in adapters[0])
    acfg = json.loads((score / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == str(tiny_model_dir)
    assert [s["stage"] for s in read_meta(score)["stages"]] == ["sft", "grpo", "score_learn"]

    shipped = run_export(cfg("export", model=str(score), output_dir=str(tmp_path / "ship"), merge=False,
                             dtype="float32", verify=False, fusion_weight=0.25))
    assert sorted(f.name for f in Path(shipped.path).iterdir()) == \
        ["README.md", "adapter_config.json", "adapter_model.safetensors", "reasonrank.json"]
    assert read_meta(shipped.path)["fusion_weight"] == 0.25
    merged = run_export(cfg("export", model=str(score), output_dir=str(tmp_path / "full"), verify=False))
    assert not (Path(shipped.path) / "model.safetensors").exists()
    assert (Path(shipped.path) / "adapter_model.safetensors").is_file()
    docs = ["Yeast makes gas.", "Volcanoes erupt.", "Bread rises when warm."]
    with ReasoningReranker(shipped.path, device="cpu") as a, ReasoningReranker(merged.path, device="cpu") as b:
        assert a.mode == "direct" and a.labels == (0, 1)
        got, want = a.score("how does bread rise", docs), b.score("how does bread rise", docs)
    assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-4)
    # a shipped adapter has no tokenizer of its own: training continues it with its base's (round 7 continues
    # the shipped reasonrank-tiny this way)
    more = run_score_learn(cfg("score-learn", model=shipped.path, train_file=str(qrels_file),
                               output_dir=str(tmp_path / "more"), max_steps=1, group_size=3, learning_rate=5e-2,
                               use_cpu=True, max_doc_tokens=64, clip_labels=True, label_scale=[0, 1], **lora))
    assert load_file(str(more / "adapter_model.safetensors")).keys() == adapters[0].keys()


@pytest.mark.parametrize("mode", ["direct", "reasoning"])
def test_grpo_changes_weights(mode, sft_direct, sft_reasoning, qrels_file, explained_file, tmp_path, cfg, changed):
    from reasonrank_train.grpo import run_grpo

    start = sft_direct if mode == "direct" else sft_reasoning
    extra = {"max_completion_length": 4} if mode == "direct" else \
        {"max_completion_length": 24, "length_penalty_weight": 0.5, "length_target": 12}
    out = run_grpo(cfg("grpo", model=str(start), train_file=str(qrels_file if mode == "direct" else explained_file),
                       output_dir=str(tmp_path / "grpo"), mode=mode, max_steps=2, per_device_train_batch_size=4,
                       num_generations=4, learning_rate=1e-3, temperature=1.5, **extra, **TRAIN))
    assert changed(start, out), "GRPO left every weight unchanged (all rewards equal in every group?)"
    meta = read_meta(out)
    assert [s["stage"] for s in meta["stages"]] == ["sft", "grpo"] and meta["mode"] == mode


@pytest.mark.parametrize("loss", ["group", "listwise", "pointwise"])
def test_score_learn_changes_weights_and_loads(loss, sft_direct, qrels_file, tmp_path, cfg, changed):
    from reasonrank_train.score_learn import run_score_learn

    out = run_score_learn(cfg("score-learn", model=str(sft_direct), train_file=str(qrels_file),
                              output_dir=str(tmp_path / "sl"), loss=loss, list_size=3, max_steps=2, group_size=3,
                              learning_rate=1e-3, use_cpu=True, max_doc_tokens=64, clip_labels=True,
                              label_scale=[0, 1]))
    assert changed(sft_direct, out)
    assert read_meta(out)["stages"][-1]["loss"] == loss
    with ReasoningReranker(str(out), mode="direct", device="cpu") as rr:
        assert len(rr.rank("what causes ocean tides", ["The Moon pulls the sea.", "Coffee has caffeine."])) == 2


def test_score_learn_keeps_the_best_dev_checkpoint(sft_direct, qrels_file, tiny_beir, tmp_path, cfg):
    """With a dev fold, the model is scored every eval_steps and the best step is the one saved."""
    from reasonrank_train.score_learn import run_score_learn

    from reasonrank.evaluation import bm25_search, load_beir, write_trec_run

    run = write_trec_run(bm25_search(load_beir(tiny_beir, "test"), k=5), tmp_path / "bm25.trec")
    out = run_score_learn(cfg("score-learn", model=str(sft_direct), train_file=str(qrels_file),
                              output_dir=str(tmp_path / "sl"), group_size=3, max_steps=4, learning_rate=5e-2,
                              use_cpu=True, max_doc_tokens=64, clip_labels=True, label_scale=[0, 1],
                              eval_collection=str(tiny_beir), eval_split="test", eval_first_stage=str(run),
                              eval_depth=5, eval_steps=2))
    last = read_meta(out)["stages"][-1]
    history = last["dev_history"]
    assert [h["step"] for h in history] == [0, 2, 4]
    best = max(history, key=lambda h: h["dev_ndcg@10"])
    assert last["best_dev_ndcg@10"] == best["dev_ndcg@10"] and last["best_step"] == best["step"]
    from reasonrank_train.evaluate import run_eval

    res = run_eval(cfg("eval", model=str(out), collection=str(tiny_beir), split="test", first_stage=str(run), k=5,
                       backend_options={"device": "cpu"}, progress=False, max_doc_tokens=64))
    assert abs(res.reranked["nDCG@10"] - best["dev_ndcg@10"]) < 1e-3  # the saved model is the best one


def test_score_learn_stops_on_a_diverged_loss_instead_of_training_nan_weights(sft_direct, qrels_file, tmp_path, cfg):
    """A learning rate far too high makes the weights (and so the loss) non-finite: the updates of those steps
    are skipped and, after a few in a row, the stage stops with an error naming the fix; nothing is saved."""
    from reasonrank_train.score_learn import NonFiniteTraining, run_score_learn

    with pytest.raises(NonFiniteTraining, match="lower learning_rate"):
        run_score_learn(cfg("score-learn", model=str(sft_direct), train_file=str(qrels_file),
                            output_dir=str(tmp_path / "sl"), group_size=3, max_steps=8, learning_rate=1e9,
                            use_cpu=True, max_doc_tokens=64, clip_labels=True, label_scale=[0, 1]))
    assert not (tmp_path / "sl").exists()


def test_group_loss_needs_a_positive():
    import torch
    from reasonrank_train.score_learn import group_loss

    with pytest.raises(ValueError, match="no positive"):
        group_loss(torch.tensor([0.1, 0.2]), torch.tensor([0.0, 0.0]))


def test_cli_runs_eval_and_export_end_to_end(sft_direct, tiny_beir, tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text(f"export: {{model: {sft_direct}, output_dir: {tmp_path / 'exp'}}}\n"
                 f"eval: {{model: {tmp_path / 'exp'}, collection: {tiny_beir}, k: 3, output: {tmp_path / 'm.json'},\n"
                 "       backend_options: {device: cpu}, progress: false}\n")
    assert main(["export", "--config", str(f), "--log-level", "WARNING"]) == 0
    assert main(["eval", "--config", str(f), "--log-level", "WARNING", "--set", "measures=[nDCG@10, RR@10]"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mode"] == "direct" and metrics["queries"] == 2
    assert 0.0 <= metrics["reranked"]["nDCG@10"] <= 1.0 and set(metrics["first_stage"]) == {"nDCG@10", "RR@10"}
    assert '"reranked"' in capsys.readouterr().out


def test_reasoning_sft_rejects_data_without_explanations(tiny_model_dir, qrels_file, tmp_path, cfg):
    from reasonrank_train.config import ConfigError
    from reasonrank_train.sft import run_sft

    c = cfg("sft", model=str(tiny_model_dir), train_file=str(qrels_file), output_dir=str(tmp_path / "x"),
            mode="reasoning", max_steps=1, **TRAIN)
    with pytest.raises(ConfigError, match="generate with `source: teacher`, or train with `mode: direct`"):
        run_sft(c)


def test_labels_off_the_scale_need_clip_labels(qrels_file, tmp_path):
    from reasonrank_train.config import ConfigError

    with pytest.raises(ConfigError, match="clip_labels: true"):
        read_examples(qrels_file, labels=(0, 1))
    assert {e.label for e in read_examples(qrels_file, labels=(0, 1), clip_labels=True)} == {0, 1}
    assert Path(qrels_file).is_file()


def test_teacher_explains_gold_pairs_keeping_gold_labels(tiny_model_dir, qrels_file, tmp_path, cfg):
    """``pairs:`` mode: every record keeps gold and teacher labels; agree_only keeps agreements only; the
    rest goes to the rejected file, so a resumed run asks the teacher nothing again."""
    out = tmp_path / "expl.jsonl"
    opts = {"pairs": str(qrels_file), "output": str(out), "source": "teacher", "teacher_model": str(tiny_model_dir),
            "teacher_backend": "transformers", "teacher_options": {"device": "cpu"}, "pairs_per_query": 2,
            "max_new_tokens": 6, "keep_failures": True, "agree_only": True, "progress": False}
    first = run_generate(cfg("generate", **opts))
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    rejected = [json.loads(x) for x in out.with_name("expl.rejected.jsonl").read_text().splitlines()]
    assert first.written == len(kept) and first.disagreements == len(rejected)
    assert len(kept) + len(rejected) == 2 * first.queries
    assert all(r["teacher_label"] == r["gold_label"] == r["label"] for r in kept)
    assert all(r["teacher_label"] != r["gold_label"] for r in rejected)
    gold = {(r["qid"], r["docid"]): r["label"] for r in map(json.loads, qrels_file.read_text().splitlines())}
    assert all(gold[(r["qid"], r["docid"])] == r["gold_label"] for r in kept + rejected)
    by_q: dict[str, list[int]] = {}
    for r in kept + rejected:
        by_q.setdefault(r["qid"], []).append(r["gold_label"])
    gold_by_q: dict[str, set[int]] = {}
    for (q, _), lab in gold.items():
        gold_by_q.setdefault(q, set()).add(lab)
    both = {q for q, labs in gold_by_q.items() if 0 in labs and max(labs) > 0}
    assert both and all(min(by_q[q]) == 0 < max(by_q[q]) for q in both)  # a positive and a negative each
    again = run_generate(cfg("generate", **opts))
    assert again.queries == 0 and again.written == 0


def test_recipe_runs_stages_in_order_and_resumes(sft_direct, qrels_file, tiny_beir, tmp_path, capsys):
    f = tmp_path / "recipe.yaml"
    f.write_text(f"eval: {{model: {tmp_path / 'exp'}, collection: {tiny_beir}, k: 3, output: {tmp_path / 'm.json'},\n"
                 "       backend_options: {device: cpu}, progress: false}\n"
                 f"export: {{model: {tmp_path / 'sl'}, output_dir: {tmp_path / 'exp'}}}\n"
                 f"score_learn: {{model: {sft_direct}, train_file: {qrels_file}, output_dir: {tmp_path / 'sl'},\n"
                 "  max_steps: 1, use_cpu: true, max_doc_tokens: 64, label_scale: [0, 1], clip_labels: true}\n")
    assert main(["recipe", "--config", str(f), "--log-level", "WARNING"]) == 0
    first = json.loads(capsys.readouterr().out)["wall_seconds"]
    assert list(first) == ["score-learn", "export", "eval"] and all(isinstance(v, float) for v in first.values())
    assert main(["recipe", "--config", str(f), "--log-level", "WARNING"]) == 0
    assert json.loads(capsys.readouterr().out)["wall_seconds"] == {s: "skipped" for s in first}


def test_reasoning_replay_keeps_the_reasoning_completion(sft_direct, qrels_file, explained_file, tiny_beir, tmp_path,
                                                         cfg):
    """Score learning with reasoning replay fits the teacher's explanation + verdict better than the same run
    without it; ``eval_at_start: false`` keeps a trained checkpoint (no step 0 in the dev history)."""
    import torch
    from reasonrank_train.completion_loss import CompletionReplay
    from reasonrank_train.score_learn import run_score_learn
    from transformers import AutoModelForCausalLM

    from reasonrank.evaluation import bm25_search, load_beir, write_trec_run

    run = write_trec_run(bm25_search(load_beir(tiny_beir, "test"), k=5), tmp_path / "bm25.trec")
    common = {"model": str(sft_direct), "train_file": str(qrels_file), "group_size": 3, "max_steps": 6,
              "learning_rate": 1e-2, "use_cpu": True, "max_doc_tokens": 64, "clip_labels": True,
              "label_scale": [0, 1], "seed": 0}
    plain = run_score_learn(cfg("score-learn", output_dir=str(tmp_path / "plain"), **common))
    replayed = run_score_learn(cfg("score-learn", output_dir=str(tmp_path / "replay"),
                                   reasoning_file=str(explained_file), reasoning_weight=2.0, reasoning_batch=4,
                                   eval_collection=str(tiny_beir), eval_split="test", eval_first_stage=str(run),
                                   eval_depth=5, eval_steps=3, eval_at_start=False, **common))
    last = read_meta(replayed)["stages"][-1]
    assert [h["step"] for h in last["dev_history"]] == [3, 6] and last["best_step"] in (3, 6)
    assert last["reasoning_replay"]["weight"] == 2.0

    tok = load_tokenizer(str(sft_direct))
    examples = read_examples(explained_file, labels=[0, 1], clip_labels=True, require_explanations=True)
    replay = CompletionReplay(tok, examples, labels=[0, 1], max_doc_tokens=64, batch=len(examples), seed=0)

    def nll(path: Path) -> float:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        with torch.inference_mode():
            return float(replay.loss(model, "cpu", autocast=False))

    with_replay, without = nll(replayed), nll(plain)
    print(f"reasoning completion NLL: replay {with_replay:.3f}, plain {without:.3f}")
    assert with_replay < without - 0.1


def test_reasoning_replay_config_errors_name_the_fix(tiny_model_dir, qrels_file, tmp_path, cfg):
    from reasonrank_train.config import ConfigError

    base = {"model": str(tiny_model_dir), "train_file": str(qrels_file), "output_dir": str(tmp_path / "x")}
    with pytest.raises(ConfigError, match="reasoning_file: data/teacher/explanations.jsonl"):
        cfg("score-learn", reasoning_weight=0.5, **base)
    with pytest.raises(ConfigError, match="is not a file"):
        cfg("score-learn", reasoning_file=str(tmp_path / "missing.jsonl"), reasoning_weight=0.5, **base)
    with pytest.raises(ConfigError, match="reasoning_batch must be >= 1"):
        cfg("score-learn", reasoning_file=str(qrels_file), reasoning_weight=0.5, reasoning_batch=0, **base)
    with pytest.raises(ConfigError, match=r"reasoning_verdict_share must be in \[0, 1\]"):
        cfg("score-learn", reasoning_file=str(qrels_file), reasoning_weight=0.5, reasoning_verdict_share=2, **base)


def test_reasoning_replay_needs_explanations(tiny_model_dir, qrels_file):
    from reasonrank_train.completion_loss import CompletionReplay

    tok = load_tokenizer(str(tiny_model_dir))
    examples = read_examples(qrels_file, labels=[0, 1], clip_labels=True)
    with pytest.raises(ValueError, match="point reasoning_file at the teacher output"):
        CompletionReplay(tok, examples, labels=[0, 1], max_doc_tokens=64, batch=2, seed=0)


def test_reasoning_replay_gives_a_share_of_examples_their_verdict(tiny_model_dir, explained_file):
    """reasoning_verdict_share: that share of replayed prompts carries the example's label (the verdict_note
    explain_top_k sends), the completion is the same teacher explanation + verdict either way."""
    from reasonrank_train.completion_loss import CompletionReplay

    tok = load_tokenizer(str(tiny_model_dir))
    examples = read_examples(explained_file, labels=[0, 1], clip_labels=True, require_explanations=True)
    n = len(examples)

    def prompts(share: float) -> list[tuple[str, list[int]]]:
        replay = CompletionReplay(tok, examples, labels=[0, 1], max_doc_tokens=64, batch=4 * n, seed=0,
                                  verdict_share=share)
        return [(tok.decode(p), c) for p, c in replay.next()]

    note = "The relevance label of this document is "
    none, every, half = prompts(0.0), prompts(1.0), prompts(0.5)
    assert not any(note in p for p, _ in none)
    assert all(note in p for p, _ in every)
    assert 0 < sum(note in p for p, _ in half) < len(half)
    assert sorted(c for _, c in none) == sorted(c for _, c in every)  # the same completions
    for p, c in every:  # the label in the prompt is the one the completion ends with
        assert p.split(note)[1][0] == tok.decode(c).strip()[-1]
    with pytest.raises(ValueError, match=r"reasoning_verdict_share must be in \[0, 1\]"):
        CompletionReplay(tok, examples, labels=[0, 1], max_doc_tokens=64, batch=2, seed=0, verdict_share=1.5)
