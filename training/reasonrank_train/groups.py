"""Score-learning groups: one query's positive against its negatives (:func:`positive_groups`), one
document's own query against other queries (:func:`query_groups`), and per-source repetition
(:func:`repeat_sources`).

A group is a list of :class:`~reasonrank_train.data.Example` with at least one positive; the group loss of
``score-learn`` is a softmax over it. Groups built from a query's candidates teach which document answers a
question. They do not teach that a document's score depends on the question: a document that every query
rates high (a long, code-heavy FAQ answer; a page full of names) loses only in the few groups that mined it
as a negative. A *query group* holds one document fixed and changes the question - the positive pair
against the same document under other training questions it does not answer - so the only thing that can
separate the group is the question-document match (the in-batch query negatives of dual-encoder training,
applied to a cross-encoder's pointwise score).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from .data import Example

__all__ = ["positive_groups", "query_groups", "repeat_sources"]


def positive_groups(examples: Sequence[Example], *, group_size: int, seed: int = 0) -> list[list[Example]]:
    """One group per positive: the positive and ``group_size - 1`` negatives of its query (seeded sample).

    Queries without a positive or without a negative give no group.

    Example:
        >>> exs = [Example("q", "p", "q", "t", 1)] + [Example("q", f"n{i}", "q", "t", 0) for i in range(5)]
        >>> exs.append(Example("q2", "n", "q2", "t", 0))  # no positive: no group
        >>> [[e.label for e in g] for g in positive_groups(exs, group_size=3)]
        [[1, 0, 0]]
    """
    by_q: dict[str, list[Example]] = {}
    for ex in examples:
        by_q.setdefault(ex.qid, []).append(ex)
    rng = random.Random(seed)
    out = []
    for q in sorted(by_q):
        pos = [e for e in by_q[q] if e.label > 0]
        neg = [e for e in by_q[q] if e.label <= 0]
        if not neg:
            continue
        for p in pos:
            out.append([p, *rng.sample(neg, min(len(neg), group_size - 1))])
    return out


def query_groups(examples: Sequence[Example], *, negatives: int, seed: int = 0) -> list[list[Example]]:
    """One group per positive pair: the pair, then its document under ``negatives`` other questions of the
    same source that it does not answer (label 0).

    Other questions are taken first among those that mined the document as a negative (the questions it
    is confused with), then at random from its source. A question is never a negative for a document it
    has as a positive, nor when its text is the positive question's text. A pair with no such question
    gives no group.

    Example:
        >>> exs = [Example("a", "d1", "who wrote it", "t1", 1), Example("b", "d2", "when was it", "t2", 1),
        ...        Example("b", "d1", "when was it", "t1", 0), Example("c", "d1", "who wrote it", "t1", 1)]
        >>> [[(e.qid, e.docid, e.label) for e in g] for g in query_groups(exs, negatives=3)]
        [[('a', 'd1', 1), ('b', 'd1', 0)], [('b', 'd2', 1), ('a', 'd2', 0), ('c', 'd2', 0)], [('c', 'd1', 1), ('b', 'd1', 0)]]
    """
    if negatives < 1:
        raise ValueError(f"query_negatives must be >= 1 other questions per document, got {negatives}")
    text: dict[str, str] = {}
    same: dict[str, str] = {}  # the question text, case and spacing folded: equal texts are one question
    source: dict[str, str] = {}
    answers: dict[str, set[str]] = {}
    confused: dict[str, list[str]] = {}
    for ex in examples:
        if ex.qid not in text:
            text[ex.qid], same[ex.qid] = ex.query, " ".join(ex.query.lower().split())
        if ex.label > 0:
            answers.setdefault(ex.qid, set()).add(ex.docid)
            source.setdefault(ex.qid, ex.source)
        else:
            confused.setdefault(ex.docid, []).append(ex.qid)
    by_source: dict[str, list[str]] = {}
    for q in sorted(source):
        by_source.setdefault(source[q], []).append(q)

    def usable(q: str, p: Example) -> bool:
        return q != p.qid and p.docid not in answers.get(q, ()) and same[q] != same[p.qid]

    rng = random.Random(seed)
    out = []
    for p in sorted((e for e in examples if e.label > 0), key=lambda e: (e.qid, e.docid)):
        hard = sorted({q for q in confused.get(p.docid, ()) if usable(q, p)})
        chosen = rng.sample(hard, min(len(hard), negatives))
        pool = by_source.get(p.source, [])
        tries = 0
        while len(chosen) < negatives and tries < 4 * negatives and pool:
            q = rng.choice(pool)
            tries += 1
            if usable(q, p) and q not in chosen:
                chosen.append(q)
        if chosen:
            out.append([p, *(Example(q, p.docid, text[q], p.text, 0, title=p.title, source=p.source)
                             for q in chosen)])
    return out


def repeat_sources(groups: Sequence[Sequence[Example]], repeat: Mapping[str, int]) -> list[list[Example]]:
    """``groups`` with each group whose positive comes from a source in ``repeat`` used that many times.

    Example:
        >>> g = [[Example("a", "p", "q", "t", 1, source="faq")], [Example("b", "p", "q", "t", 1, source="wiki")]]
        >>> [grp[0].qid for grp in repeat_sources(g, {"faq": 3})]
        ['a', 'a', 'a', 'b']
    """
    out: list[list[Example]] = []
    for group in groups:
        src = next((e.source for e in group if e.label > 0), group[0].source if group else "")
        out += [list(group)] * int(repeat.get(src, 1))
    return out
