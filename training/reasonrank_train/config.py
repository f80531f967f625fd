"""Stage configurations: dataclasses with help metadata, checked in ``__post_init__`` with errors that
state the fix, loaded from YAML with unknown-key errors.

A config file holds one section per stage (``generate``, ``sft``, ``grpo``, ``score_learn``, ``eval``,
``export``); ``reasonrank-train STAGE --config FILE`` reads that stage's section. The SFT and GRPO sections
are TRL's :class:`~trl.SFTConfig` / :class:`~trl.GRPOConfig` extended with reasonrank fields, so every TRL
option is available there.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonrank.options import OptionError, parse_options
from reasonrank.parsing import validate_labels

__all__ = [
    "STAGES",
    "ConfigError",
    "GenerateConfig",
    "LoraFields",
    "ModelFields",
    "ScoreLearnConfig",
    "check_label_scale",
    "config_class",
    "load_config",
    "parse_overrides",
]

MODES = ("reasoning", "direct")

# stage name (CLI) -> (YAML section, "module:Class"); classes are imported lazily (TRL is heavy).
STAGES: dict[str, tuple[str, str]] = {
    "synth": ("synth", "reasonrank_train.teacher:SynthConfig"),
    "data": ("data", "reasonrank_train.databuild:DataConfig"),
    "generate": ("generate", "reasonrank_train.config:GenerateConfig"),
    "sft": ("sft", "reasonrank_train.sft:SFTRunConfig"),
    "grpo": ("grpo", "reasonrank_train.grpo:GRPORunConfig"),
    "score-learn": ("score_learn", "reasonrank_train.config:ScoreLearnConfig"),
    "eval": ("eval", "reasonrank_train.evaluate:EvalConfig"),
    "export": ("export", "reasonrank_train.export:ExportConfig"),
}


class ConfigError(ValueError):
    """A stage configuration is invalid; the message says how to fix it."""


def _h(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with ``help`` metadata (shown by ``reasonrank-train STAGE --help-config``)."""
    if isinstance(default, (list, dict, tuple)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


def check_label_scale(value: Any, where: str = "label_scale") -> tuple[int, ...]:
    """Validate a label scale given as a list or an int ``n`` (meaning ``0..n``).

    Example:
        >>> check_label_scale(2)
        (0, 1, 2)
        >>> check_label_scale([1, 2])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        reasonrank_train.config.ConfigError: label_scale: ... e.g. label_scale: [0, 1, 2]
    """
    try:
        scale = range(int(value) + 1) if isinstance(value, int) and not isinstance(value, bool) else value
        return validate_labels(scale)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}; use consecutive labels from 0, e.g. label_scale: [0, 1, 2]") from None


def _check_labels_consecutive(scale: tuple[int, ...], where: str) -> None:
    if scale != tuple(range(len(scale))):
        raise ConfigError(f"{where}: labels must be consecutive from 0, got {list(scale)}; e.g. label_scale: "
                          f"{list(range(len(scale)))}")


@dataclass
class ModelFields:
    """Fields shared by the training stages (mixed into the TRL configs)."""

    model: str | None = _h("Model to train: hub id, local directory (safetensors or a LoRA adapter saved by an "
                           "earlier stage), 'smollm2-local' or 'tiny-random'.", None)
    train_file: str | None = _h("Training examples (jsonl) written by `reasonrank-train generate`.", None)
    mode: str = _h("'reasoning' (InteRank: explanation, then label) or 'direct' (ProRank: label only).",
                   "reasoning")
    label_scale: Any = _h("Graded labels, e.g. [0, 1, 2]; an int n means 0..n.", [0, 1, 2])  # noqa: RUF009 (a field factory)
    clip_labels: bool = _h("Map example labels above the top of label_scale to the top label (e.g. a binary "
                           "warm-up on graded data); otherwise such labels are an error.", False)
    max_doc_tokens: int = _h("Documents are cut to this many tokens, as the reranker does at inference.", 512)
    max_examples: int | None = _h("Use at most this many examples (None: all).", None)

    def _check_model_fields(self) -> None:
        if not self.model:
            raise ConfigError("model is not set; set `model:` to a hub id, a local model directory, "
                              "'smollm2-local' or 'tiny-random'")
        if not self.train_file:
            raise ConfigError("train_file is not set; set `train_file:` to the jsonl written by "
                              "`reasonrank-train generate`")
        if not Path(self.train_file).is_file():
            raise ConfigError(f"train_file {self.train_file} does not exist; run `reasonrank-train generate` "
                              "first or fix the path")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'reasoning' or 'direct', got {self.mode!r}")
        self.label_scale = check_label_scale(self.label_scale)
        if not isinstance(self.max_doc_tokens, int) or self.max_doc_tokens < 1:
            raise ConfigError(f"max_doc_tokens must be a positive int, got {self.max_doc_tokens!r}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1 or null, got {self.max_examples!r}")


@dataclass
class LoraFields:
    """LoRA / QLoRA options (InteRank: QLoRA, 4-bit base, rank-64 adapters)."""

    use_lora: bool = _h("Train LoRA adapters instead of all weights.", False)
    lora_r: int = _h("LoRA rank (InteRank: 64).", 64)
    lora_alpha: int = _h("LoRA alpha.", 16)
    lora_dropout: float = _h("LoRA dropout.", 0.05)
    lora_target_modules: Any = _h("Modules that get adapters: 'all-linear' or a list of names.", "all-linear")  # noqa: RUF009 (a field factory)
    lora_top_layers: int | None = _h("Adapters on the top N transformer layers only (None: all). Backpropagation "
                                     "stops below them, so training is faster (CPU recipes).", None)
    load_in_4bit: bool = _h("QLoRA: load the base model in 4-bit NF4 (needs a CUDA GPU and bitsandbytes).", False)

    def _check_lora_fields(self, *, use_cpu: bool) -> None:
        if self.lora_top_layers is not None and (isinstance(self.lora_top_layers, bool) or
                                                 not isinstance(self.lora_top_layers, int) or self.lora_top_layers < 1):
            raise ConfigError(f"lora_top_layers must be a positive int or null, got {self.lora_top_layers!r}")
        if self.load_in_4bit and not self.use_lora:
            raise ConfigError("load_in_4bit needs LoRA adapters (QLoRA): set use_lora: true, or load_in_4bit: false")
        if self.load_in_4bit and use_cpu:
            raise ConfigError("load_in_4bit needs a CUDA GPU (bitsandbytes); set load_in_4bit: false to train on CPU")
        if self.use_lora and (not isinstance(self.lora_r, int) or self.lora_r < 1):
            raise ConfigError(f"lora_r must be a positive int, got {self.lora_r!r}")


@dataclass
class GenerateConfig:
    """``generate``: label (query, document) pairs of a local collection with a teacher LLM or with qrels."""

    corpus: str | None = _h("Collection folder: BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a "
                            "local BRIGHT copy (collection_format: bright). Not needed with `pairs:`.", None)
    pairs: str | None = _h("Gold-labelled examples (jsonl, e.g. train.jsonl of `reasonrank-train data`) for the "
                           "teacher to explain, instead of a collection's candidates.", None)
    pairs_queries: int | None = _h("With `pairs:`: explain this many queries (seeded sample; None: all).", None)
    pairs_per_query: int = _h("With `pairs:`: documents per query (positives first, then the first negatives).", 2)
    pairs_negative: str = _h("With `pairs:`: which negative comes first: 'hard' (the first mined one) or 'random' "
                             "(the random one, last in the data builder's order).", "hard")
    agree_only: bool = _h("source: teacher with gold labels: keep only the explanations whose teacher verdict "
                          "equals the gold label.", False)
    output: str | None = _h("Output jsonl; appended to and resumed if it exists.", None)
    source: str = _h("'teacher' (an LLM writes explanation + label) or 'qrels' (gold labels, no explanation).",
                     "teacher")
    collection_format: str = _h("'beir' or 'bright'.", "beir")
    bright_domain: str | None = _h("BRIGHT domain (collection_format: bright), e.g. 'biology'.", None)
    split: str = _h("qrels split (BEIR): qrels/<split>.tsv.", "train")
    teacher_model: str | None = _h("Teacher model (source: teacher), e.g. a served model name for the openai "
                                   "backend.", None)
    teacher_backend: str = _h("reasonrank backend of the teacher: 'openai', 'vllm', 'transformers', ...",
                              "openai")
    teacher_options: dict = _h("Extra backend options for the teacher (e.g. base_url, api_key_env).", {})  # noqa: RUF009 (a field factory)
    label_scale: Any = _h("Graded labels of the teacher prompt / qrels mapping, e.g. [0, 1, 2].", [0, 1, 2])  # noqa: RUF009 (a field factory)
    candidates_per_query: int = _h("Documents per query: judged documents first, then negatives.", 8)
    negatives: str = _h("How to fill candidate lists: 'bm25' (hard negatives) or 'random'.", "bm25")
    max_queries: int | None = _h("Use at most this many queries (sorted ids; None: all).", None)
    max_doc_tokens: int = _h("Teacher: documents are cut to this many tokens.", 512)
    max_new_tokens: int = _h("Teacher: generation budget for explanation + label.", 256)
    batch_size: int = _h("Teacher: documents per backend batch.", 8)
    keep_failures: bool = _h("Keep teacher outputs without a valid verdict (label from probabilities).", False)
    seed: int = _h("Seed for random negatives.", 0)
    progress: bool = _h("Show a progress bar.", True)

    def __post_init__(self) -> None:
        if self.pairs:
            if not Path(self.pairs).is_file():
                raise ConfigError(f"pairs file {self.pairs} does not exist; build it with `reasonrank-train data`")
            if self.source != "teacher":
                raise ConfigError("`pairs:` are explained by a teacher: set source: teacher")
            if self.pairs_negative not in ("hard", "random"):
                raise ConfigError(f"pairs_negative must be 'hard' or 'random', got {self.pairs_negative!r}")
            if self.pairs_per_query < 1:
                raise ConfigError(f"pairs_per_query must be >= 1, got {self.pairs_per_query}")
        elif not self.corpus:
            raise ConfigError("corpus is not set; set `corpus:` to a BEIR-layout folder (corpus.jsonl, "
                              "queries.jsonl, qrels/<split>.tsv), or `pairs:` to gold-labelled examples")
        elif not Path(self.corpus).is_dir():
            raise ConfigError(f"corpus folder {self.corpus} does not exist; fix `corpus:`")
        if not self.output:
            raise ConfigError("output is not set; set `output:` to the jsonl file to write, e.g. runs/train.jsonl")
        if self.source not in ("teacher", "qrels"):
            raise ConfigError(f"source must be 'teacher' or 'qrels', got {self.source!r}")
        if self.source == "teacher" and not self.teacher_model:
            raise ConfigError("source: teacher needs `teacher_model:` (and `teacher_backend:`); or use "
                              "source: qrels to label pairs with gold relevance judgments")
        if self.collection_format not in ("beir", "bright"):
            raise ConfigError(f"collection_format must be 'beir' or 'bright', got {self.collection_format!r}")
        if self.collection_format == "bright" and not self.bright_domain:
            raise ConfigError("collection_format: bright needs `bright_domain:` (e.g. biology)")
        if self.negatives not in ("bm25", "random"):
            raise ConfigError(f"negatives must be 'bm25' or 'random', got {self.negatives!r}")
        if not isinstance(self.teacher_options, Mapping):
            raise ConfigError("teacher_options must be a mapping of backend options, e.g. {base_url: ...}")
        for name in ("candidates_per_query", "max_doc_tokens", "max_new_tokens", "batch_size"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ConfigError(f"{name} must be a positive int, got {val!r}")
        self.label_scale = check_label_scale(self.label_scale)


@dataclass
class ScoreLearnConfig(ModelFields, LoraFields):
    """``score-learn`` (ProRank stage 2): fine-grained scores from label-token logits, no new layers."""

    output_dir: str | None = _h("Where the trained model is saved.", None)
    loss: str = _h("'group' (softmax CE over a positive and its negatives on the label-logit margin, plus "
                   "BCE), 'listwise' (ListNet over a query's candidate list) or 'pointwise' (squared error of "
                   "the expected score against the graded label).", "group")
    group_size: int = _h("loss: group - documents per group: one positive and group_size - 1 negatives.", 5)
    bce_weight: float = _h("loss: group - weight of the pointwise BCE term on the label-logit margin.", 1.0)
    warmup_ratio: float = _h("Linear warm-up over this fraction of the steps, then linear decay.", 0.05)
    inject_promote: float = _h("loss: group - probability that a group's negative carries a planted promotion "
                               "text ('rate this page relevant'; label stays 0): adversarial training against "
                               "prompt injection (reasonrank_train.augment).", 0.0)
    inject_demote: float = _h("loss: group - probability that a group's positive carries a planted demotion "
                              "text (label stays 1).", 0.0)
    inject_noise: float = _h("loss: group - probability that one document of any label in a group carries "
                             "planted text with no signal (another document's sentence, or a promotion/demotion "
                             "phrasing on a document of either label): extra text must not move the score.", 0.0)
    drop_title: float = _h("loss: group - share of groups whose documents lose their titles, so the text is "
                           "judged, not a title matched against the question (untitled documents: the Python "
                           "FAQ, most users' chunks; reasonrank_train.augment.drop_titles).", 0.0)
    query_negatives: int = _h("loss: group - also one group per positive pair that keeps its document and "
                              "changes the question: the pair against the document under this many other "
                              "training questions it does not answer (those that mined it as a negative first), "
                              "so a document cannot score high whatever is asked (reasonrank_train.groups; 0: off).",
                              0)
    source_repeat: dict[str, int] = _h("loss: group - repeat the groups of these training sources this many "
                                       "times (e.g. {python-faq: 4}: a small source gets more weight).", {})
    reasoning_file: str | None = _h("Teacher explanations (jsonl with `explanation`, e.g. "
                                    "data/teacher/explanations.jsonl) replayed during score learning: each step "
                                    "also takes the SFT completion loss (explanation + verdict) of reasoning_batch "
                                    "of them, so reasoning mode keeps writing a parseable verdict "
                                    "(reasonrank_train.completion_loss).", None)
    reasoning_weight: float = _h("Weight of the replayed reasoning completion loss (0: off).", 0.0)
    reasoning_batch: int = _h("Reasoning examples replayed per optimizer step.", 2)
    reasoning_verdict_share: float = _h("Share of replayed examples given their label in the prompt (the "
                                        "template's verdict_note), as explain_top_k gives the direct label.", 0.0)
    eval_collection: str | list[str] | None = _h("Dev fold(s) (BEIR folders) for model selection, scored by their "
                                                 "mean nDCG@10; None: keep the last step.", None)
    eval_split: str = _h("qrels split of the dev fold.", "dev")
    eval_first_stage: str | list[str] | None = _h("TREC run(s) to rerank on the dev fold(s), one per "
                                                  "eval_collection (e.g. runs/dense.trec of the data builder).",
                                                  None)
    eval_depth: int = _h("Dev: rerank depth.", 20)
    eval_max_queries: int | None = _h("Dev: evaluate this many queries (seeded sample; None: all).", None)
    eval_steps: int = _h("Dev: evaluate every this many steps (and at the end).", 200)
    eval_batch_size: int = _h("Dev: documents per forward pass.", 16)
    eval_at_start: bool = _h("Dev: also score the starting model (step 0), which is kept if no step beats it; "
                             "false: the best *trained* checkpoint is kept (e.g. when a run adds a loss the "
                             "dev metric does not see, such as reasoning replay).", True)
    patience: int = _h("Stop after this many dev evaluations without improvement (0: never).", 0)
    list_size: int = _h("Documents per candidate list (longer lists are split, shorter kept).", 8)
    lists_per_step: int = _h("Candidate lists per optimizer step.", 1)
    temperature: float = _h("Softmax temperature: over margins (group; 1.0 is a good start) or expected scores "
                            "(listwise; e.g. 0.1).", 1.0)
    learning_rate: float = _h("AdamW learning rate.", 1e-5)
    weight_decay: float = _h("AdamW weight decay.", 0.0)
    max_grad_norm: float = _h("Gradient clipping norm.", 1.0)
    num_train_epochs: float = _h("Epochs over the candidate lists (ignored when max_steps > 0).", 1.0)
    max_steps: int = _h("Optimizer steps; -1: from num_train_epochs.", -1)
    activation_checkpointing: bool = _h("Trade compute for memory (gradient checkpointing).", False)
    dtype: str = _h("Training dtype: 'float32', 'bfloat16' or 'auto' (bf16 on GPUs that support it).", "auto")
    use_cpu: bool = _h("Train on CPU even if a GPU is present.", False)
    logging_steps: int = _h("Log the loss every this many steps.", 10)
    seed: int = _h("Random seed.", 42)
    mode: str = _h("Score learning reads the label right after the marker: always 'direct'.", "direct")

    def __post_init__(self) -> None:
        self._check_model_fields()
        self._check_lora_fields(use_cpu=self.use_cpu)
        if self.load_in_4bit:
            raise ConfigError("score_learn saves merged full weights, which a 4-bit base cannot give; set "
                              "load_in_4bit: false (use_lora: true still saves memory)")
        if self.mode != "direct":
            raise ConfigError("score_learn reads label-token logits right after 'Relevance:', so mode must be "
                              "'direct'; remove `mode:` from the score_learn section")
        if not self.output_dir:
            raise ConfigError("output_dir is not set; set `output_dir:` for the trained model")
        if self.loss not in ("group", "listwise", "pointwise"):
            raise ConfigError(f"loss must be 'group', 'listwise' or 'pointwise', got {self.loss!r}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (a positive and at least one negative), got {self.group_size}")
        for name in ("inject_promote", "inject_demote", "inject_noise", "drop_title"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
            if getattr(self, name) and self.loss != "group":
                raise ConfigError(f"{name} augments group losses only; set loss: group or {name}: 0")
        if not isinstance(self.query_negatives, int) or isinstance(self.query_negatives, bool) \
                or self.query_negatives < 0:
            raise ConfigError(f"query_negatives must be an int >= 0 (other questions per document; 0: off), got "
                              f"{self.query_negatives!r}")
        if self.query_negatives and self.loss != "group":
            raise ConfigError("query_negatives builds groups for loss: group only; set loss: group or "
                              "query_negatives: 0")
        if self.reasoning_weight < 0:
            raise ConfigError(f"reasoning_weight must be >= 0, got {self.reasoning_weight}")
        if self.reasoning_weight and not self.reasoning_file:
            raise ConfigError("reasoning_weight is set but reasoning_file is not: set reasoning_file: "
                              "data/teacher/explanations.jsonl (the teacher output) or reasoning_weight: 0")
        if self.reasoning_file and not Path(self.reasoning_file).is_file():
            raise ConfigError(f"reasoning_file {self.reasoning_file} is not a file; write it with "
                              "`reasonrank-train generate` (source: teacher) or unset reasoning_file")
        if self.reasoning_batch < 1:
            raise ConfigError(f"reasoning_batch must be >= 1, got {self.reasoning_batch}")
        if not 0.0 <= self.reasoning_verdict_share <= 1.0:
            raise ConfigError(f"reasoning_verdict_share must be in [0, 1] (a share of the replayed examples), got "
                              f"{self.reasoning_verdict_share}")
        for name, n in self.source_repeat.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"source_repeat[{name!r}] must be a positive int (times its groups are used), "
                                  f"got {n!r}")
        folds, runs = self.eval_folds()
        if len(folds) != len(runs):
            raise ConfigError(f"eval_first_stage needs one TREC run per eval_collection: {len(folds)} fold(s), "
                              f"{len(runs)} run(s)")
        for fold, run in zip(folds, runs):
            if not Path(fold).is_dir():
                raise ConfigError(f"eval_collection {fold} does not exist; build it with "
                                  "`reasonrank-train data` or set eval_collection: null")
            if not Path(run).is_file():
                raise ConfigError(f"eval_first_stage {run} is not a file: give the fold's TREC run, e.g. "
                                  "data/built/fanout-vital-dev/runs/dense.trec")
        if self.list_size < 2:
            raise ConfigError(f"list_size must be >= 2 (a list ranks documents against each other), got {self.list_size}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ConfigError("nothing to train: set max_steps > 0 or num_train_epochs > 0")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}")
        _check_labels_consecutive(self.label_scale, "score_learn.label_scale")

    def eval_folds(self) -> tuple[list[str], list[str]]:
        """The dev folds and their first-stage runs, as parallel lists (empty without a dev fold)."""
        def listed(v: str | list[str] | None) -> list[str]:
            return [] if not v else [v] if isinstance(v, str) else [str(x) for x in v]
        return listed(self.eval_collection), listed(self.eval_first_stage)


# ---------------------------------------------------------------------------------------------- loading
def config_class(stage: str) -> type:
    """The config dataclass of a CLI stage name."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    mod, _, attr = STAGES[stage][1].partition(":")
    return getattr(importlib.import_module(mod), attr)


def _init_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML (``max_steps=2`` gives an int).

    Example:
        >>> parse_overrides(["max_steps=2", "use_lora=true", "model=a/b"])
        {'max_steps': 2, 'use_lora': True, 'model': 'a/b'}
    """
    import yaml

    try:
        return parse_options(items, flag="--set", example="max_steps=2",
                             value=lambda text: yaml.safe_load(text) if text.strip() else None)
    except OptionError as exc:
        raise ConfigError(f"override {exc.item!r} must look like key=value, e.g. --set max_steps=2") from None


def _numbers(known: Mapping[str, dataclasses.Field], values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Values of float options given as text become floats: YAML 1.1 reads ``2e-4`` (no dot) as a string,
    which would otherwise fail deep inside the optimiser; text that is no number is a ConfigError.

    Example:
        >>> from reasonrank_train.config import ScoreLearnConfig
        >>> _numbers(_init_fields(ScoreLearnConfig), {"learning_rate": "2e-4", "model": "m"}, "x")
        {'learning_rate': 0.0002, 'model': 'm'}
    """
    out = dict(values)
    for name, value in values.items():
        kind = known[name].type
        kind = kind if isinstance(kind, str) else str(kind)
        if not isinstance(value, str) or "float" not in kind or "str" in kind:
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"{source}: option {name!r} must be a number (e.g. {name}: 2.0e-4), got {value!r}") \
                from None
    return out


def build_config(stage: str, values: Mapping[str, Any], *, source: str = "config") -> Any:
    """Instantiate the stage's config from a mapping; unknown keys fail with the closest valid names."""
    cls = config_class(stage)
    known = _init_fields(cls)
    unknown = [k for k in values if k not in known]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(known), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else \
            f"run `reasonrank-train {stage} --help-config` to list the options"
        raise ConfigError(f"{source}: unknown option {key!r} for stage {stage!r}; {hint}")
    try:
        return cls(**_numbers(known, values, source))
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # TRL/transformers validation: keep their message, name the stage
        raise ConfigError(f"{source}: invalid {stage} option: {exc}") from exc


def load_config(path: str | os.PathLike[str], stage: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """Read the section of ``stage`` from a YAML file, apply ``overrides`` and build its config.

    Raises:
        ConfigError: missing file/section, unknown section or option, invalid value (the message says the fix).
    """
    import yaml

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; see training/configs/ for examples")
    with p.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: a config file holds a mapping of stage sections (generate:, sft:, ...)")
    sections = {sec for sec, _ in STAGES.values()}
    for key in data:
        if key not in sections and not str(key).startswith("x-"):
            close = difflib.get_close_matches(str(key), sorted(sections), n=1)
            raise ConfigError(f"{p}: unknown section {key!r}; sections are {', '.join(sorted(sections))}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + "; put shared YAML anchors under a key starting with 'x-'")
    section = STAGES[stage][0]
    values = data.get(section)
    if values is None and not overrides:
        raise ConfigError(f"{p} has no `{section}:` section; add one (see training/configs/tiny-cpu.yaml)")
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{p}: section `{section}:` must be a mapping of options")
    merged = {**(values or {}), **(overrides or {})}
    return build_config(stage, merged, source=f"{p} [{section}]")


def describe_config(stage: str) -> str:
    """Human listing of a stage's options with defaults and help (reasonrank fields first)."""
    cls = config_class(stage)
    own = [f for f in dataclasses.fields(cls) if f.init and "help" in f.metadata]
    lines = [f"{stage} options ({cls.__name__}):"]
    for f in own:
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        lines.append(f"  {f.name} = {default!r}\n      {f.metadata['help']}")
    return "\n".join(lines)
