"""``reasonrank-train {synth,data,generate,sft,grpo,score-learn,eval,export} --config FILE.yaml [--set key=value ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import STAGES, ConfigError, describe_config, load_config, parse_overrides

__all__ = ["main", "run_stage"]

logger = logging.getLogger(__name__)


def run_stage(stage: str, cfg: Any) -> Any:
    """Run one stage with a built config; returns the stage's result (path, stats or metrics)."""
    if stage == "synth":
        from .teacher import run_synth

        return run_synth(cfg)
    if stage == "data":
        from .databuild import run_data

        return run_data(cfg)
    if stage == "generate":
        from .generate import run_generate

        return run_generate(cfg)
    if stage == "sft":
        from .sft import run_sft

        return run_sft(cfg)
    if stage == "grpo":
        from .grpo import run_grpo

        return run_grpo(cfg)
    if stage == "score-learn":
        from .score_learn import run_score_learn

        return run_score_learn(cfg)
    if stage == "eval":
        from .evaluate import run_eval

        return run_eval(cfg)
    if stage == "export":
        from .export import run_export

        return run_export(cfg)
    raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")


RECIPE_ORDER = ("synth", "data", "generate", "sft", "grpo", "score-learn", "export", "eval")


def _stage_done(stage: str, cfg: Any) -> bool:
    """A stage whose output already exists is skipped by ``recipe`` (delete the output to redo it)."""
    from .modeling import read_meta

    if stage in ("sft", "grpo", "score-learn"):
        out = Path(getattr(cfg, "output_dir", "") or "")
        done = [s.get("stage") for s in read_meta(out).get("stages", [])] if out.is_dir() else []
        return stage.replace("-", "_") in done
    if stage == "export":
        return (Path(cfg.output_dir or "") / "reasonrank.json").is_file()
    if stage == "data":
        return (Path(cfg.out_dir or "") / "stats.json").is_file()
    if stage == "eval":
        return bool(cfg.output) and Path(cfg.output).is_file()
    return False  # synth and generate resume on their own (skip what is written)


def run_recipe(path: str, stages: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the stages of a config file in pipeline order, skipping finished ones; returns wall times."""
    import time

    import yaml

    unknown = [s for s in stages or () if s not in RECIPE_ORDER]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(RECIPE_ORDER)} (stage names use '-', e.g. score-learn)")
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    wanted = [s for s in RECIPE_ORDER if STAGES[s][0] in data and (not stages or s in stages)]
    if not wanted:
        raise ConfigError(f"{path} has no stage section to run; sections: {', '.join(STAGES)}")
    times: dict[str, Any] = {}
    for stage in wanted:
        cfg = load_config(path, stage)
        if _stage_done(stage, cfg):
            logger.info("recipe: %s is done already, skipped", stage)
            times[stage] = "skipped"
            continue
        started = time.time()
        logger.info("recipe: running %s", stage)
        run_stage(stage, cfg)
        times[stage] = round(time.time() - started, 1)
        logger.info("recipe: %s took %.0f s", stage, times[stage])
    return times


def _summary(result: Any) -> str:
    if hasattr(result, "as_dict"):
        return json.dumps(result.as_dict(), indent=2)
    if hasattr(result, "__dataclass_fields__"):
        return json.dumps({k: getattr(result, k) for k in result.__dataclass_fields__}, indent=2, default=str)
    return str(result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reasonrank-train", description=__doc__)
    parser.add_argument("stage", choices=[*STAGES, "recipe"],
                        help="pipeline stage to run, or 'recipe': every stage of the config in order, resumable")
    parser.add_argument("--stages", help="recipe: comma-separated subset of stages to run")
    parser.add_argument("--config", "-c", help="YAML file with a section per stage (see training/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option of the stage's section (repeatable), e.g. --set max_steps=2")
    parser.add_argument("--help-config", action="store_true", help="list the stage's options and exit")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.help_config:
        if args.stage == "recipe":
            parser.error("--help-config takes a stage name, e.g. reasonrank-train sft --help-config")
        print(describe_config(args.stage))
        return 0
    if not args.config:
        parser.error("--config FILE.yaml is required (see training/configs/tiny-cpu.yaml)")
    if args.stage == "recipe":
        try:
            times = run_recipe(args.config, args.stages.split(",") if args.stages else None)
        except ConfigError as exc:
            print(f"reasonrank-train recipe: config error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({"wall_seconds": times}, indent=2))
        return 0
    try:
        cfg = load_config(args.config, args.stage, parse_overrides(args.overrides))
    except ConfigError as exc:
        print(f"reasonrank-train {args.stage}: config error: {exc}", file=sys.stderr)
        return 2
    result = run_stage(args.stage, cfg)
    print(_summary(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
