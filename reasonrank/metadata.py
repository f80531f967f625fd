"""Model metadata: the ``reasonrank.json`` file that ``reasonrank-train`` writes next to trained weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["META_FILE", "read_model_meta"]

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
