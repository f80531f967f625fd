#!/usr/bin/env python
"""Do the explanations say why? Explanation quality of reasoning-mode rerankers on the dev folds (never on
fanout-final-test), on balanced pairs: for each of the first ``--max-queries`` queries of a fold (sorted ids,
queries with a relevant document), the relevant document the dense run ranks highest and the non-relevant
document it ranks highest (the hardest negative of the top ``--depth``).

Each ``--system`` explains every pair two ways (``--variants``): ``reasoning`` (reasoning mode: the model
judges afresh, explanation first) and ``explain`` (what ``explain_top_k`` does: the direct-mode label first,
then the reasoning prompt with that label in its ``verdict_note``, asking why). Printed per fold:

- **stance vs gold**: the explanation's stance (does it say the document is relevant or not: a lexical
  rule, :func:`stance`) agrees with the gold label; reported for relevant and non-relevant pairs apart, so a
  model that calls everything "not relevant" scores 100% / 0%, not 50%;
- **stance vs verdict**: the stance agrees with the label shown next to it (``reasoning``: the label the
  model wrote after the explanation; ``explain``: the direct-mode label it was asked to explain);
- **grounded**: the share of the explanation's content words found in the query or the document (a
  hallucination proxy: "Okapi, a small mammal" for the BM25 page has two words from neither);
- parse rate and mean length.

For ``explain`` the template's ``verdict_lead`` ("The document is relevant to the query because it") is left
out of what is measured: the stance and grounding are those of the words the model wrote after it.

The ``teacher`` row applies the same rules to the teacher's explanations the students were distilled from
(``--teacher``), which calibrates the lexical stance rule: its polarity there is the rule's ceiling.

Example (the docs/benchmarks.md table)::

    python benchmarks/explanations.py --system r5=runs/reasonrank-tiny/export-r5 --system shipped=reasonrank-tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from reasonrank import ReasoningReranker
from reasonrank.evaluation import Collection, load_beir, read_trec_run
from reasonrank.io import read_jsonl
from reasonrank.templates import PromptTemplate

_NEGATIVE = re.compile(
    r"\b(?:does not|doesn't|do not|don't|is not|isn't|are not|not directly|not related|not relevant|"
    r"unrelated|irrelevant|no information|nothing about|not mention|not answer|not address|not provide|"
    r"neither|nor does)\b", re.IGNORECASE)
_HEDGE = re.compile(  # a hedge that still calls the document useful wins over a negation ...
    r"\b(?:but|however|though)\b[^.]{0,60}\b(?:does|do|it|still) (?:provides?|contains?|gives?|offers?)|"
    r"\brelevant information\b|\bhelps? (?:to )?answer|\bdirectly answers\b", re.IGNORECASE)
_NEGATED = re.compile(r"\b(?:not|no|never|without)\b|n't\b", re.IGNORECASE)  # ... unless itself negated
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_STOP = frozenset("""a an the and or but of to in on at by for with from as is are was were be been being it its
this that these those which who whom what when where why how there their them they he she his her we you i not
no does do did doesn t can could may might will would should about into than then also only such any some
document documents query queries question questions provides provide provided information relevant relevance
answer answers answered related directly discuss discusses discussed mention mentions mentioned describes
describe explains explain explanation label judge judged topic topics about other more most very so if""".split())


def stance(explanation: str) -> int:
    """1 when an explanation says the document is relevant, 0 when it says it is not: a negation cue without
    a hedge that still calls the document useful ("does not directly answer ..., but does provide ...").

    Example:
        >>> stance("The document defines BM25, the ranking function the query asks about.")
        1
        >>> stance("The document is about cooking pasta and does not answer the query.")
        0
        >>> stance("It does not directly answer the query, but it does provide relevant information.")
        1
        >>> stance("The document does not provide relevant information about tides.")
        0
    """
    if not _NEGATIVE.search(explanation):
        return 1
    hedges = (m for m in _HEDGE.finditer(explanation) if m.group(0).split()[0].lower() in ("but", "however", "though")
              or not _NEGATED.search(" ".join(explanation[: m.start()].split()[-3:])))
    return 1 if next(hedges, None) else 0


def grounded(explanation: str, query: str, document: str) -> float:
    """Share of the explanation's content words (no stop words, no judging vocabulary) that occur in the query
    or the document; 1.0 for an explanation with no content words.

    Example:
        >>> grounded("It is about Okapi, a small mammal.", "how does BM25 score", "Okapi BM25 ranks documents")
        0.3333333333333333
    """
    words = [w for w in _WORD.findall(explanation.lower()) if w not in _STOP]
    if not words:
        return 1.0
    seen = set(_WORD.findall(f"{query} {document}".lower()))
    return sum(w in seen for w in words) / len(words)


def model_words(explanation: str, template: PromptTemplate, labels: tuple[int, ...], verdict: int,
                variant: str) -> str:
    """The part of an explanation the model wrote: for ``explain``, without the template's ``verdict_lead``
    (which states the given label, so the stance measured is that of the model's own reason)."""
    lead = template.assistant_start(labels=labels, verdict=verdict)[len(template.assistant_prefix):].strip()
    if variant == "explain" and lead and explanation.startswith(lead):
        return explanation[len(lead):].strip()
    return explanation


def pairs(fold: Collection, run: dict[str, dict[str, float]], n: int, depth: int) -> list[dict[str, Any]]:
    """The balanced pairs of a fold: per query, the best-ranked relevant and non-relevant document."""
    out = []
    for q in sorted(q for q in fold.qrels if q in run and any(r > 0 for r in fold.qrels[q].values())):
        ranked = sorted(run[q], key=lambda d: -run[q][d])[:depth]
        rel = [d for d in ranked if fold.qrels[q].get(d, 0) > 0] or \
              sorted(d for d, r in fold.qrels[q].items() if r > 0)
        neg = [d for d in ranked if fold.qrels[q].get(d, 0) <= 0]
        if not neg:
            continue
        out += [{"qid": q, "docid": rel[0], "gold": 1}, {"qid": q, "docid": neg[0], "gold": 0}]
        if len(out) >= 2 * n:
            break
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Polarity, groundedness, parse rate and length of judged pairs (each row: gold, label, explanation,
    parse_ok, query, text; ``given``: the label was given, not parsed, so every row counts for the stance
    against it; ``reason``, when present: the model's own words of the explanation, which are measured)."""
    rows = [{**r, "explanation": r.get("reason", r["explanation"])} for r in rows]  # the model's own words
    said = [r for r in rows if r["explanation"]]
    pos = [r for r in said if r["gold"] == 1]
    neg = [r for r in said if r["gold"] == 0]

    def share(xs: list[dict[str, Any]], f: Any) -> float | None:
        return round(sum(map(f, xs)) / len(xs), 3) if xs else None

    return {"pairs": len(rows), "explained": len(said),
            "polarity_relevant": share(pos, lambda r: stance(r["explanation"]) == 1),
            "polarity_not_relevant": share(neg, lambda r: stance(r["explanation"]) == 0),
            "polarity_vs_verdict": share([r for r in said if r["parse_ok"] or r.get("given")],
                                         lambda r: stance(r["explanation"]) == int(r["label"] > 0)),
            "grounded": share(said, lambda r: grounded(r["explanation"], r["query"], r["text"])),
            "parse_rate": share(rows, lambda r: r["parse_ok"]),
            "words": share(said, lambda r: len(r["explanation"].split()))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--system", action="append", default=[], metavar="NAME=MODEL")
    p.add_argument("--fold", action="append", type=Path, metavar="DIR")
    p.add_argument("--split", default="dev")
    p.add_argument("--first-stage", default="dense")
    p.add_argument("--depth", type=int, default=10, help="the hardest negative is taken from this top")
    p.add_argument("--max-queries", type=int, default=20, help="queries per fold (two pairs each)")
    p.add_argument("--max-doc-tokens", type=int, default=160)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--dtype", default="auto", help="model dtype (auto: the reranker's default for this machine)")
    p.add_argument("--variants", default="reasoning,explain", help="comma-separated: reasoning, explain")
    p.add_argument("--teacher", type=Path, default=Path("data/teacher/explanations.jsonl"))
    p.add_argument("--out", type=Path, default=Path("runs/explanations"))
    args = p.parse_args(argv)
    folds = args.fold or [Path("data/built/fanout-vital-dev"), Path("data/built/python-faq-dev")]
    systems = [s.partition("=")[::2] for s in args.system]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - {"reasoning", "explain"}:
        p.error("--variants: reasoning, explain or both")
    if any(not n or not m for n, m in systems):
        p.error("--system: write NAME=MODEL, e.g. --system shipped=reasonrank-tiny")
    logging.basicConfig(level=logging.WARNING)
    table = []
    if args.teacher.is_file():
        rows = [{"gold": r["label"], "label": r["label"], "parse_ok": True, "explanation": r["explanation"],
                 "query": r["query"], "text": f"{r.get('title') or ''}\n{r['text']}"}
                for _, r in read_jsonl(args.teacher)]
        table.append({"fold": "teacher train pairs", "system": "teacher", **summarise(rows)})
    args.out.mkdir(parents=True, exist_ok=True)
    for path in folds:
        fold = load_beir(path, args.split, name=path.name)
        chosen = pairs(fold, read_trec_run(path / "runs" / f"{args.first_stage}.trec"), args.max_queries, args.depth)
        todo = [(fold.queries[c["qid"]], fold.corpus[c["docid"]]) for c in chosen]
        for name, model in systems:
            with ReasoningReranker(model, mode="direct", explain_top_k=1, max_doc_tokens=args.max_doc_tokens,
                                   max_new_tokens=args.max_new_tokens, dtype=args.dtype) as rr:
                for variant in variants:
                    if variant == "reasoning":
                        judged = rr.explainer.score_pairs(todo)
                        shown = [r.label for r in judged]
                    else:  # explain_top_k: the direct label, then the explanation of that label
                        direct = rr.score_pairs(todo)
                        shown = [r.label for r in direct]
                        judged = rr.explainer.score_pairs(todo, verdicts=rr.explain_verdicts(direct))
                    rows = [{**c, "query": q, "text": d.prompt_text, "label": v, "parse_ok": r.parse_ok,
                             "given": variant == "explain", "explanation": r.explanation or "",
                             "reason": model_words(r.explanation or "", rr.explainer.template, rr.labels, v,
                                                  variant)}
                            for c, (q, d), r, v in zip(chosen, todo, judged, shown)]
                    with (args.out / f"{path.name}-{name}-{variant}.jsonl").open("w", encoding="utf-8") as fh:
                        fh.writelines(json.dumps(r) + "\n" for r in rows)
                    table.append({"fold": path.name, "system": f"{name} {variant}", **summarise(rows)})
                    print(json.dumps(table[-1]), flush=True)
    (args.out / "summary.json").write_text(json.dumps(table, indent=2), encoding="utf-8")
    print("\n| fold | system | pairs | stance right, relevant | stance right, not relevant | stance = own verdict | "
          "grounded | parse rate | words |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['fold']} | {r['system']} | {r['pairs']} | {r['polarity_relevant']} | "
              f"{r['polarity_not_relevant']} | {r['polarity_vs_verdict']} | {r['grounded']} | {r['parse_rate']} | "
              f"{r['words']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
