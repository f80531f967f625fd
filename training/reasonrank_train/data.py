"""Training examples: the jsonl written by ``generate``, and the prompts/targets built from it.

Prompts are built by the one prompt builder of serving (:class:`reasonrank.prompting.PromptBuilder`: the
same sanitising, truncation, template and chat rendering as :class:`reasonrank.ReasoningReranker`), so a
trained model sees the token ids it is served and speaks the format the reranker parses.

Example record::

    {"qid": "q1", "docid": "d7", "query": "...", "title": "...", "text": "...", "label": 2,
     "explanation": "The document defines ...", "source": "teacher"}
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonrank.backends.tokenization import render_prompt
from reasonrank.io import JsonlError, read_jsonl
from reasonrank.prompting import PromptBuilder, TokenizerTextOps
from reasonrank.schema import Document
from reasonrank.templates import get_template

from .config import ConfigError

__all__ = [
    "Example",
    "candidate_lists",
    "example_key",
    "grpo_rows",
    "iter_jsonl",
    "read_examples",
    "render_example",
    "sft_rows",
    "strip_auto_bos",
    "target_completion",
]

logger = logging.getLogger(__name__)

_REQUIRED = ("qid", "docid", "query", "text", "label")


@dataclass(frozen=True)
class Example:
    """One labelled (query, document) pair."""

    qid: str
    docid: str
    query: str
    text: str
    label: int
    title: str | None = None
    explanation: str | None = None
    source: str = "teacher"
    gold_label: int | None = None      # the gold judgment, kept next to a teacher's label
    teacher_label: int | None = None   # the teacher's own verdict (a teacher record)
    origin: str | None = None          # where the query came from (e.g. fanoutqa, teacher-bridge)

    @property
    def document(self) -> Document:
        return Document(text=self.text, id=self.docid, title=self.title)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False)


def example_key(qid: str, docid: str) -> str:
    """The dedup/resume key of a pair."""
    return f"{qid}\t{docid}"


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a jsonl file; a truncated last line (interrupted write) is skipped.

    Raises:
        ConfigError: a malformed line (the message names path:line).
    """
    try:
        yield from read_jsonl(path, skip_partial_last=True, what="one example object")
    except JsonlError as exc:
        raise ConfigError(str(exc)) from None


def read_examples(path: str | Path, *, labels: Sequence[int], clip_labels: bool = False,
                  require_explanations: bool = False, max_examples: int | None = None) -> list[Example]:
    """Read and check examples (labels on the scale, explanations present when needed).

    Raises:
        ConfigError: a malformed record; the message names the line and the fix.
    """
    out: list[Example] = []
    seen: set[str] = set()
    top = labels[-1]
    for n, row in iter_jsonl(path):
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ConfigError(f"{path}:{n} lacks {missing}; records need {list(_REQUIRED)} (write them with "
                              "`reasonrank-train generate`)")
        try:
            label = int(row["label"])
        except (TypeError, ValueError):
            raise ConfigError(f"{path}:{n}: label {row['label']!r} is not an integer") from None
        if label not in labels:
            if clip_labels and label > top:
                label = top
            elif clip_labels and label < 0:
                label = 0
            else:
                raise ConfigError(f"{path}:{n}: label {label} is not on label_scale {list(labels)}; set "
                                  "`label_scale:` to the data's scale, or `clip_labels: true` to map higher "
                                  "grades to the top label")
        expl = row.get("explanation")
        if require_explanations and not (isinstance(expl, str) and expl.strip()):
            raise ConfigError(f"{path}:{n} has no explanation; reasoning-mode training needs teacher explanations: "
                              "generate with `source: teacher`, or train with `mode: direct`")
        key = example_key(str(row["qid"]), str(row["docid"]))
        if key in seen:
            continue
        seen.add(key)
        out.append(Example(qid=str(row["qid"]), docid=str(row["docid"]), query=str(row["query"]),
                           text=str(row["text"]), label=label, title=row.get("title") or None,
                           explanation=expl.strip() if isinstance(expl, str) else None,
                           source=str(row.get("source", "teacher")), gold_label=row.get("gold_label"),
                           teacher_label=row.get("teacher_label"), origin=row.get("origin")))
        if max_examples and len(out) >= max_examples:
            break
    if not out:
        raise ConfigError(f"{path} holds no examples; run `reasonrank-train generate` first")
    return out


def render_example(tokenizer: Any, ex: Example, *, mode: str, labels: Sequence[int], max_doc_tokens: int,
                   sanitize: bool = True, with_verdict: bool = False) -> str:
    """The exact prompt text the reranker sends for this pair (chat template + assistant prefix), built by
    :class:`reasonrank.prompting.PromptBuilder` like the reranker's (``sanitize`` as the reranker's
    ``sanitize_documents``, on by default in both). ``with_verdict``: the prompt that asks to explain the
    example's label, as ``explain_top_k`` asks for the direct-mode label (without the template's
    ``verdict_lead``: the completion trained is the teacher's whole explanation)."""
    builder = PromptBuilder(template=get_template(None, mode),  # type: ignore[arg-type]
                            labels=tuple(labels), max_doc_tokens=max_doc_tokens, sanitize=sanitize)
    ((prompt, _),) = builder.build(ex.query, [ex.document], TokenizerTextOps(tokenizer),
                                   verdicts=[ex.label] if with_verdict else None, lead=False)
    return render_prompt(tokenizer, prompt)


def target_completion(ex: Example, *, mode: str) -> str:
    """What the model should write after the assistant prefix.

    Example:
        >>> ex = Example("q", "d", "query", "doc", 2, explanation="It answers the query.")
        >>> target_completion(ex, mode="reasoning")
        ' It answers the query.\\nRelevance: 2'
        >>> target_completion(ex, mode="direct")
        ' 2'
    """
    tpl = get_template(None, mode)  # type: ignore[arg-type]
    if mode == "direct":
        return f" {ex.label}"
    if not ex.explanation:
        raise ConfigError(f"example {ex.qid}/{ex.docid} has no explanation; reasoning-mode training needs teacher "
                          "explanations (generate with `source: teacher`) or `mode: direct`")
    return f" {ex.explanation}\n{tpl.marker} {ex.label}"


def strip_auto_bos(tokenizer: Any, text: str) -> str:
    """Drop a leading BOS string when the tokenizer adds BOS itself (avoids a doubled BOS in trainers that
    tokenize prompts with special tokens, e.g. Llama-3 chat templates under GRPO)."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        ids = tokenizer("x")["input_ids"]
        if ids and ids[0] == tokenizer.bos_token_id:
            return text[len(bos):]
    return text


def sft_rows(tokenizer: Any, examples: Iterable[Example], *, mode: str, labels: Sequence[int],
             max_doc_tokens: int) -> list[dict[str, str]]:
    """Prompt-completion rows for TRL's SFTTrainer (completion-only loss)."""
    return [{"prompt": render_example(tokenizer, ex, mode=mode, labels=labels, max_doc_tokens=max_doc_tokens),
             "completion": target_completion(ex, mode=mode)} for ex in examples]


def grpo_rows(tokenizer: Any, examples: Iterable[Example], *, mode: str, labels: Sequence[int],
              max_doc_tokens: int) -> list[dict[str, Any]]:
    """Prompt rows for TRL's GRPOTrainer; ``label`` (gold/teacher) reaches the reward functions."""
    return [{"prompt": strip_auto_bos(tokenizer, render_example(tokenizer, ex, mode=mode, labels=labels,
                                                                max_doc_tokens=max_doc_tokens)),
             "label": ex.label} for ex in examples]


def candidate_lists(examples: Iterable[Example], *, list_size: int, seed: int = 0) -> list[list[Example]]:
    """Group examples by query into lists of at most ``list_size`` (shuffled, seeded); single-document
    lists are dropped (nothing to rank against).

    Example:
        >>> exs = [Example("q1", str(i), "q", "t", i % 3) for i in range(5)] + [Example("q2", "x", "q", "t", 0)]
        >>> [len(x) for x in candidate_lists(exs, list_size=3)]
        [3, 2]
    """
    by_q: dict[str, list[Example]] = {}
    for ex in examples:
        by_q.setdefault(ex.qid, []).append(ex)
    rng = random.Random(seed)
    out: list[list[Example]] = []
    dropped = 0
    for qid in sorted(by_q):
        docs = by_q[qid][:]
        rng.shuffle(docs)
        for i in range(0, len(docs), list_size):
            chunk = docs[i:i + list_size]
            if len(chunk) >= 2:
                out.append(chunk)
            else:
                dropped += 1
    if dropped:
        logger.info("%d single-document candidate lists dropped", dropped)
    return out
