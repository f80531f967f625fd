"""reasonrank-train: teacher data generation, distillation (SFT), RL refinement (GRPO), ProRank score
learning, evaluation and export of reasoning rerankers that :class:`reasonrank.ReasoningReranker` loads.

One CLI drives every stage from a YAML config::

    reasonrank-train generate --config training/configs/tiny-cpu.yaml
    reasonrank-train sft --config training/configs/tiny-cpu.yaml
    reasonrank-train grpo --config training/configs/tiny-cpu.yaml
    reasonrank-train score-learn --config training/configs/tiny-cpu.yaml
    reasonrank-train export --config training/configs/tiny-cpu.yaml
    reasonrank-train eval --config training/configs/tiny-cpu.yaml

Install with ``pip install "reasonrank[train]"``. See ``docs/training.md``.
"""

from __future__ import annotations

__all__ = ["STAGES", "ConfigError"]

from .config import STAGES, ConfigError
