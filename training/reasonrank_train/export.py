"""``export``: merged safetensors weights + tokenizer + model card + ``reasonrank.json``.

The export directory is a plain transformers model that :class:`reasonrank.ReasoningReranker` loads
directly (``ReasoningReranker("path/to/export", mode=...)``); LoRA adapters are merged into their base, or,
with ``merge: false``, exported as the adapter alone (which ``ReasoningReranker`` merges once into its cache).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank._deps import require
from reasonrank.backends.dtypes import resolve_dtype
from reasonrank.metadata import model_defaults

from .config import MODES, ConfigError, _h, check_label_scale
from .modeling import META_FILE, is_adapter_dir, load_model, load_tokenizer, read_meta, resolve_train_model

__all__ = ["ExportConfig", "ExportResult", "model_card", "run_export"]

logger = logging.getLogger(__name__)


@dataclass
class ExportConfig:
    """``export``: merged safetensors weights + tokenizer + model card, loadable by ``ReasoningReranker``."""

    model: str | None = _h("Stage output to export: a model directory or a LoRA adapter directory.", None)
    output_dir: str | None = _h("Export directory.", None)
    base_model: str | None = _h("Base model of a LoRA adapter (None: the one recorded in adapter_config.json).",
                                None)
    mode: str | None = _h("Mode recorded in the card; None: the checkpoint's recorded mode or 'reasoning'.", None)
    label_scale: Any = _h("Label scale recorded in the card; None: the checkpoint's or [0, 1, 2].", None)  # noqa: RUF009 (a field factory)
    dtype: str = _h("Saved dtype: 'auto' (as trained), 'float32', 'bfloat16', 'float16'.", "auto")
    name: str | None = _h("Model name in the card (None: the output folder name).", None)
    verify: bool = _h("Load the export in ReasoningReranker and score one pair before finishing.", True)
    fusion_weight: float | None = _h("Score-fusion weight recorded in reasonrank.json as the model's default "
                                     "(tune it on a dev fold: benchmarks/engine.py); None: no fusion default.", None)
    merge: bool = _h("Merge a LoRA adapter into its base (a plain checkpoint); false: export the adapter itself "
                     "(a few MB, resolved onto its base by ReasoningReranker; how reasonrank-tiny ships).", True)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model is not set; set `model:` to the output_dir of sft, grpo or score_learn")
        if not Path(self.model).is_dir():
            raise ConfigError(f"model {self.model} is not a directory; export takes a stage's output_dir")
        if not self.output_dir:
            raise ConfigError("output_dir is not set; set `output_dir:` for the exported model")
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"mode must be 'reasoning', 'direct' or null, got {self.mode!r}")
        if self.label_scale is not None:
            self.label_scale = check_label_scale(self.label_scale)
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}")
        if self.fusion_weight is not None and (isinstance(self.fusion_weight, bool) or
                                               not isinstance(self.fusion_weight, (int, float)) or
                                               not 0 <= self.fusion_weight <= 1):
            raise ConfigError(f"fusion_weight must be a number in [0, 1] or null, got {self.fusion_weight!r}")


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how it was checked."""

    path: str
    mode: str
    label_scale: tuple[int, ...]
    verified_score: float | None


def model_card(*, name: str, mode: str, label_scale: tuple[int, ...], meta: dict[str, Any]) -> str:
    """A README.md model card (YAML front matter + usage) for an exported reranker."""
    stages = meta.get("stages", [])
    history = "\n".join(f"- `{s.get('stage')}` from `{s.get('from')}`"
                        + "".join(f", {k}={v}" for k, v in s.items() if k not in ("stage", "from"))
                        for s in stages) or "- (no recorded stages)"
    scale = ", ".join(map(str, label_scale))
    base = meta.get("base_model", "unknown")
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [reranking, reasonrank, {'interank' if mode == 'reasoning' else 'prorank'}]
base_model: {base}
---

# {name}

A pointwise relevance reranker trained with `reasonrank-train`. Mode: **{mode}** ({
'a short explanation, then `Relevance: <label>`' if mode == 'reasoning' else 'the label read from the label-token probabilities'}).
Labels: {scale}. Prompt template: `{meta.get('template', 'interank' if mode == 'reasoning' else 'prorank')}`.

## Use

```python
from reasonrank import ReasoningReranker

rr = ReasoningReranker("{name}", mode="{mode}", label_scale=({scale},))
for r in rr.rank("how do vaccines work", ["Vaccines train the immune system ...", "Cats sleep a lot."]):
    print(r.rank, round(r.score, 3), r.label, r.explanation)
```

## Training history

Base model: `{base}`

{history}
"""


def _save_dtype(cfg: ExportConfig, model: Any) -> Any:
    dtype = resolve_dtype(cfg.dtype, require("torch", "train"))
    return model.dtype if dtype is None else dtype


def run_export(cfg: ExportConfig) -> ExportResult:
    """Merge (if needed) and save; optionally load the export in ``ReasoningReranker`` and score one pair."""
    src = Path(cfg.model or "")
    meta = read_meta(src)
    defaults = model_defaults(meta, mode=cfg.mode, label_scale=cfg.label_scale or None)
    mode, scale = defaults.mode, defaults.label_scale
    out = Path(cfg.output_dir or "")
    if out.resolve() == src.resolve():
        raise ValueError("output_dir must differ from model; export writes a new directory")
    torch = require("torch", "train")
    dtype = resolve_dtype(cfg.dtype, torch)
    if is_adapter_dir(src) and not cfg.merge:
        return _export_adapter(cfg, src, out, mode=mode, scale=scale, meta=meta)
    if is_adapter_dir(src):
        logger.info("merging LoRA adapter %s", src)
    model = load_model(str(src), dtype=dtype or torch.float32, base_model=cfg.base_model, for_training=False)
    if cfg.dtype == "auto" and not is_adapter_dir(src):
        cfg_dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
        if isinstance(cfg_dtype, str):
            cfg_dtype = getattr(torch, cfg_dtype, None)
        if cfg_dtype is not None and cfg_dtype != model.dtype:
            model = model.to(cfg_dtype)
    else:
        model = model.to(_save_dtype(cfg, model))
    tok = load_tokenizer(str(src) if (src / "tokenizer_config.json").is_file() else resolve_train_model(
        cfg.base_model or meta.get("base_model", str(src))))
    tmp = _fresh_tmp(out)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    return _finish(cfg, src, tmp, out, mode=mode, scale=scale, meta=meta)


def _export_adapter(cfg: ExportConfig, src: Path, out: Path, *, mode: str, scale: tuple[int, ...],
                    meta: dict[str, Any]) -> ExportResult:
    """Copy a LoRA adapter (weights cast to ``cfg.dtype``) with a card and ``reasonrank.json``."""
    torch = require("torch", "train")
    st = require("safetensors.torch", "train")
    tmp = _fresh_tmp(out)
    tensors = st.load_file(str(src / "adapter_model.safetensors"))
    if cfg.dtype != "auto":
        tensors = {k: v.to(resolve_dtype(cfg.dtype, torch)).contiguous() for k, v in tensors.items()}
    st.save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    # the adapter alone: the tokenizer is the base's (training never changes it), and training_args.bin is a
    # pickle that has no place in a shipped model
    shutil.copy2(src / "adapter_config.json", tmp / "adapter_config.json")
    return _finish(cfg, src, tmp, out, mode=mode, scale=scale, meta=meta)


def _fresh_tmp(out: Path) -> Path:
    """An empty staging folder next to ``out`` (the export appears at ``out`` only when complete)."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _finish(cfg: ExportConfig, src: Path, tmp: Path, out: Path, *, mode: str, scale: tuple[int, ...],
            meta: dict[str, Any]) -> ExportResult:
    """Write the card and ``reasonrank.json`` into the staged export, move it to ``out`` and verify it."""
    meta = {**meta, "mode": mode, "label_scale": list(scale)}
    if cfg.fusion_weight is not None:
        meta["fusion_weight"] = cfg.fusion_weight
    card = model_card(name=cfg.name or out.name, mode=mode, label_scale=scale, meta=meta)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    logger.info("exported %s (%s mode, labels %s) to %s", src, mode, scale, out)
    return ExportResult(path=str(out), mode=mode, label_scale=scale, verified_score=_verify(cfg, out, mode, scale))


def _verify(cfg: ExportConfig, out: Path, mode: str, scale: tuple[int, ...]) -> float | None:
    verified = None
    if cfg.verify:
        from reasonrank import ReasoningReranker

        with ReasoningReranker(str(out), mode=mode, label_scale=scale, max_new_tokens=32) as rr:
            res = rr.score("what is relevance ranking", ["Ranking orders documents by relevance to a query."])
        if res[0].error:  # e.g. NaN weights: a model that cannot score must not pass as exported
            raise RuntimeError(f"export of {out} failed its check: ReasoningReranker could not score a pair "
                               f"({res[0].error}); the trained weights are broken: retrain the stage (or export "
                               "with verify: false to inspect them)")
        verified = res[0].score
        logger.info("export verified: ReasoningReranker loaded %s and scored a pair (%.3f)", out, verified)
    return verified
