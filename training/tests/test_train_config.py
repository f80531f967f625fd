"""Bad configs fail early with errors that name the fix; YAML sections and overrides load."""

from __future__ import annotations

from pathlib import Path

import pytest
from reasonrank_train.cli import main
from reasonrank_train.config import ConfigError, build_config, load_config, parse_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def sft_opts(data, tmp_path, **kw):
    return {"model": "tiny-random", "train_file": str(data), "output_dir": str(tmp_path / "o"),
            "use_cpu": True, **kw}


def test_unknown_option_suggests_the_closest_name(qrels_file, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option 'learning_rat'.*did you mean learning_rate"):
        build_config("sft", sft_opts(qrels_file, tmp_path, learning_rat=1e-4))


@pytest.mark.parametrize("opts, fix", [
    ({"model": None}, r"set `model:`"),
    ({"train_file": "nope.jsonl"}, r"run `reasonrank-train generate` first"),
    ({"mode": "listwise"}, r"mode must be 'reasoning' or 'direct'"),
    ({"label_scale": [1, 2]}, r"e\.g\. label_scale: \[0, 1, 2\]"),
    ({"load_in_4bit": True}, r"set use_lora: true"),
    ({"load_in_4bit": True, "use_lora": True}, r"set load_in_4bit: false to train on CPU"),
    ({"packing": True}, r"set packing: false"),
])
def test_bad_sft_configs_name_the_fix(qrels_file, tmp_path, opts, fix):
    with pytest.raises(ConfigError, match=fix):
        build_config("sft", sft_opts(qrels_file, tmp_path, **opts))


@pytest.mark.parametrize("opts, fix", [
    ({"per_device_train_batch_size": 3, "num_generations": 2}, r"set per_device_train_batch_size: 2"),
    ({"num_generations": 1, "per_device_train_batch_size": 2}, r"num_generations must be >= 2"),
    ({"reward_weights": [1.0, 1.0]}, r"set label_reward_weight"),
    ({"label_reward_weight": 0.0, "format_reward_weight": 0.0}, r"set label_reward_weight: 1.0"),
])
def test_bad_grpo_configs_name_the_fix(qrels_file, tmp_path, opts, fix):
    base = {"per_device_train_batch_size": 4, "num_generations": 4}
    with pytest.raises(ConfigError, match=fix):
        build_config("grpo", sft_opts(qrels_file, tmp_path, **{**base, **opts}))


def test_grpo_defaults_follow_mode(qrels_file, tmp_path):
    direct = build_config("grpo", sft_opts(qrels_file, tmp_path, mode="direct", per_device_train_batch_size=8))
    reasoning = build_config("grpo", sft_opts(qrels_file, tmp_path, per_device_train_batch_size=8))
    assert direct.max_completion_length == 4 and reasoning.max_completion_length == 256
    assert reasoning.reward_weights == [1.0, 0.2] and reasoning.beta == 0.0


@pytest.mark.parametrize("stage, opts, fix", [
    ("score-learn", {"mode": "reasoning"}, r"mode must be\s+'direct'"),
    ("score-learn", {"list_size": 1}, r"list_size must be >= 2"),
    ("score-learn", {"output_dir": None}, r"set `output_dir:`"),
    ("score-learn", {"load_in_4bit": True, "use_lora": True}, r"set load_in_4bit: false"),
    ("score-learn", {"inject_promote": 1.5}, r"inject_promote is a probability"),
    ("score-learn", {"drop_title": -0.1}, r"drop_title is a probability"),
    ("score-learn", {"query_negatives": -1}, r"query_negatives must be an int >= 0"),
    ("score-learn", {"query_negatives": 2, "loss": "listwise"}, r"set loss: group or\s+query_negatives: 0"),
    ("score-learn", {"inject_demote": 0.2, "loss": "listwise"}, r"set loss: group or inject_demote: 0"),
])
def test_bad_score_learn_configs(qrels_file, tmp_path, stage, opts, fix):
    base = {"model": "tiny-random", "train_file": str(qrels_file), "output_dir": str(tmp_path / "o")}
    with pytest.raises(ConfigError, match=fix):
        build_config(stage, {**base, **opts})


def test_bad_generate_eval_export_configs(tmp_path, tiny_beir):
    with pytest.raises(ConfigError, match="needs `teacher_model:`"):
        build_config("generate", {"corpus": str(tiny_beir), "output": str(tmp_path / "x.jsonl")})
    with pytest.raises(ConfigError, match="fix `corpus:`"):
        build_config("generate", {"corpus": str(tmp_path / "none"), "output": "x", "source": "qrels"})
    with pytest.raises(ConfigError, match="TREC run file"):
        build_config("eval", {"model": "m", "collection": str(tiny_beir), "first_stage": "dense"})
    with pytest.raises(ConfigError, match="export takes a stage's output_dir"):
        build_config("export", {"model": str(tmp_path / "missing"), "output_dir": str(tmp_path / "e")})
    with pytest.raises(ConfigError, match=r"faq_per_answer must be in 0\.\.3 \(one question per angle\)"):
        build_config("synth", {"output": str(tmp_path / "q.jsonl"), "faq_per_answer": 4})


def test_yaml_sections_overrides_and_unknown_sections(tmp_path, qrels_file):
    f = tmp_path / "c.yaml"
    f.write_text(f"x-shared: &s {{use_cpu: true}}\nsft:\n  <<: *s\n  model: tiny-random\n"
                 f"  train_file: {qrels_file}\n  output_dir: {tmp_path / 'o'}\n  mode: direct\n")
    c = load_config(f, "sft", parse_overrides(["max_steps=3", "label_scale=[0, 1, 2]"]))
    assert (c.max_steps, c.mode, c.use_cpu, c.label_scale, c.completion_only_loss) == (3, "direct", True,
                                                                                        (0, 1, 2), True)
    with pytest.raises(ConfigError, match=r"no `grpo:` section; add one"):
        load_config(f, "grpo")
    f.write_text("sfft: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section 'sfft'.*did you mean 'sft'"):
        load_config(f, "sft")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["max_steps"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_have_valid_sections(name):
    import yaml

    data = yaml.safe_load((CONFIGS / name).read_text())
    assert {"generate", "export", "eval"} <= set(data) or {"synth", "data", "generate"} <= set(data) or \
        {"score_learn", "export", "eval"} <= set(data)
    from reasonrank_train.config import STAGES, _init_fields, config_class

    for stage, (section, _) in STAGES.items():
        if section in data:
            unknown = set(data[section]) - set(_init_fields(config_class(stage)))
            assert not unknown, f"{name} [{section}] has unknown options {unknown}"


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("generate: {corpus: /no/such/dir, output: x.jsonl, source: qrels}\n")
    assert main(["generate", "--config", str(f)]) == 2
    assert "fix `corpus:`" in capsys.readouterr().err
    assert main(["sft", "--help-config"]) == 0
    assert "train_file" in capsys.readouterr().out


def test_recipe_rejects_an_unknown_stage_name_instead_of_skipping_it(capsys):
    """``--stages score_learn`` (the section name, not the stage name) once ran only ``export`` and failed later."""
    config = str(CONFIGS / "reasonrank-small.yaml")
    assert main(["recipe", "--config", config, "--stages", "score_learn,export"]) == 2
    err = capsys.readouterr().err
    assert "'score_learn'" in err and "score-learn" in err


@pytest.mark.parametrize("stage", ["sft", "score-learn"])
def test_float_options_written_without_a_dot_are_numbers(qrels_file, tmp_path, stage):
    # YAML 1.1 reads 2e-4 as the string '2e-4': it used to reach torch's AdamW and fail there with a TypeError
    f = tmp_path / "c.yaml"
    f.write_text(f"{stage.replace('-', '_')}:\n  model: tiny-random\n  train_file: {qrels_file}\n"
                 f"  output_dir: {tmp_path / 'o'}\n  use_cpu: true\n  learning_rate: 3e-5\n")
    assert load_config(f, stage).learning_rate == pytest.approx(3e-5)
    c = load_config(f, stage, parse_overrides(["learning_rate=2e-4", "max_steps=2"]))
    assert (c.learning_rate, c.max_steps) == (pytest.approx(2e-4), 2)
    with pytest.raises(ConfigError, match=r"'learning_rate' must be a number \(e.g. learning_rate: 2.0e-4\), got 'fast'"):
        load_config(f, stage, parse_overrides(["learning_rate=fast"]))
