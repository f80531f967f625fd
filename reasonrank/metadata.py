"""Model metadata: the ``reasonrank.json`` file that ``reasonrank-train`` writes next to trained weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["META_FILE", "ModelDefaults", "model_defaults", "read_model_meta"]

META_FILE = "reasonrank.json"
"""Written next to trained weights by ``reasonrank-train``: mode, label scale and template the model was
trained for; :class:`~reasonrank.ReasoningReranker` uses them as defaults."""


def read_model_meta(model: str | Path) -> dict[str, Any]:
    """The ``reasonrank.json`` of a local model directory, or ``{}`` (hub ids, files, directories without it).

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    from .models import SHIPPED_MODELS, shipped_model_dir  # models re-exports this module's names

    if model in SHIPPED_MODELS:
        model = shipped_model_dir(str(model))
    f = Path(model) / META_FILE
    try:
        if not f.is_file():
            return {}
    except OSError:  # e.g. a name too long to be a path
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is accepted
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{f} is not valid JSON ({exc}); fix it or delete it to use the built-in defaults") from None
    if not isinstance(data, dict):
        raise ValueError(f"{f} must hold a JSON object (mode, label_scale, template); delete or fix it")
    tpl = data.get("template")
    if isinstance(tpl, str) and (tpl.endswith((".yaml", ".yml", ".json"))) and not Path(tpl).is_absolute():
        data["template"] = str(Path(model) / tpl)  # a template file travels with the model directory
    return data


@dataclass(frozen=True)
class ModelDefaults:
    """Mode, label scale and template to run a model with (see :func:`model_defaults`)."""

    mode: str
    label_scale: Any  # a tuple of labels (or, when it is not a sequence, the bad value as given)
    template: Any  # a template name, file, mapping or PromptTemplate; None: the mode's built-in one


def model_defaults(meta: dict[str, Any], *, mode: str | None = None, label_scale: Any = None,
                   template: Any = None) -> ModelDefaults:
    """The one rule every entry point (API, CLI, adapters, serve, training eval/export) uses: an explicit
    argument wins, then the model's ``reasonrank.json`` (``meta``), then the built-in default (reasoning
    mode, labels 0-2, the mode's template). The recorded template applies only in the mode it was recorded
    for. ``None`` means "not given".

    Example:
        >>> model_defaults({"mode": "direct", "label_scale": [0, 1], "template": "prorank"})
        ModelDefaults(mode='direct', label_scale=(0, 1), template='prorank')
        >>> model_defaults({"mode": "direct", "template": "prorank"}, mode="reasoning")
        ModelDefaults(mode='reasoning', label_scale=(0, 1, 2), template=None)
        >>> model_defaults({}, label_scale=2).label_scale
        (0, 1, 2)
    """
    mode = mode or meta.get("mode") or "reasoning"
    scale = label_scale if label_scale is not None else meta.get("label_scale", (0, 1, 2))
    if isinstance(scale, int) and not isinstance(scale, bool):
        scale = tuple(range(scale + 1))
    elif isinstance(scale, (list, tuple, range)):
        scale = tuple(scale)  # anything else is left for validate_labels to reject with its message
    if template is None and meta.get("template") and meta.get("mode") == mode:
        template = meta["template"]
    return ModelDefaults(mode=mode, label_scale=scale, template=template)
