"""Rewards: doctests of every pure function, plus properties the GRPO stage relies on."""

from __future__ import annotations

import doctest

import pytest
import reasonrank_train.augment
import reasonrank_train.completion_loss
import reasonrank_train.config
import reasonrank_train.data
import reasonrank_train.groups
import reasonrank_train.rewards
import reasonrank_train.score_learn
from reasonrank_train.rewards import format_reward, label_reward, length_penalty, make_reward_funcs


@pytest.mark.parametrize("module", [reasonrank_train.rewards, reasonrank_train.config, reasonrank_train.data,
                                    reasonrank_train.score_learn, reasonrank_train.augment,
                                    reasonrank_train.completion_loss, reasonrank_train.groups], ids=lambda m: m.__name__)
def test_doctests(module):
    res = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0, f"{module.__name__} has no doctests"
    assert res.failed == 0


def test_label_reward_partial_credit_is_monotone_in_distance():
    comps = [f" Some reason.\nRelevance: {k}" for k in (0, 1, 2)]
    assert label_reward(comps, label=[2, 2, 2]) == [0.0, 0.5, 1.0]
    assert label_reward(comps, label=[0, 0, 0]) == [1.0, 0.5, 0.0]
    assert label_reward(comps[:2], label=[0, 1], labels=(0, 1)) == [1.0, 1.0]


def test_label_reward_uses_last_verdict_and_rejects_off_scale_labels():
    assert label_reward([" x Relevance: 0 then Relevance: 2"], label=[2]) == [1.0]
    assert label_reward([" reason\nRelevance: 7"], label=[2]) == [0.0]


def test_label_reward_length_mismatch_raises():
    with pytest.raises(ValueError, match="label column"):
        label_reward([" a", " b"], label=[1])


def test_conversational_completions_are_read():
    comp = [[{"role": "assistant", "content": " It defines the term.\nRelevance: 2"}]]
    assert label_reward(comp, label=[2]) == [1.0]
    assert format_reward(comp) == [1.0]


def test_format_reward_needs_explanation_words():
    assert format_reward([" Yes.\nRelevance: 2"], min_explanation_words=3) == [0.5]
    assert format_reward([" Yes.\nRelevance: 2"], min_explanation_words=1) == [1.0]


def test_length_penalty_falls_back_to_words_and_validates():
    assert length_penalty([" one two three four"], target_tokens=2) == [-1.0]
    with pytest.raises(ValueError, match="target_tokens"):
        length_penalty(["a"], target_tokens=0)


def test_reward_funcs_follow_trl_signature():
    funcs = make_reward_funcs(mode="reasoning", labels=(0, 1, 2), length_target=4)
    kwargs = {"prompts": ["p", "p"], "completions": [" It fits.\nRelevance: 2", " no"],
              "completion_ids": [[1, 2, 3], [1] * 12], "label": [2, 2], "trainer_state": None}
    out = [f(**kwargs) for f in funcs]
    assert out == [[1.0, 0.0], [0.5, 0.0], [0.0, -1.0]]
    assert [f.__name__ for f in funcs] == ["label_reward", "format_reward", "length_penalty"]


def test_injection_augmentation_plants_texts_and_keeps_labels():
    from reasonrank_train.augment import DEMOTE_TRAIN, PROMOTE_TRAIN, inject
    from reasonrank_train.data import Example

    groups = [[Example(f"q{i}", "p", f"query {i}", "on topic", 1),
               *[Example(f"q{i}", f"n{j}", f"query {i}", f"off topic {j}", 0) for j in range(4)]] for i in range(400)]
    out = inject(groups, promote=0.5, demote=0.25, seed=3)
    assert [[e.label for e in g] for g in out] == [[e.label for e in g] for g in groups]
    promoted = sum(any(e.text != o.text for e, o in zip(g[1:], og[1:])) for g, og in zip(out, groups))
    demoted = sum(g[0].text != og[0].text for g, og in zip(out, groups))
    assert 160 < promoted < 240 and 60 < demoted < 140, (promoted, demoted)
    planted = {e.text.replace(o.text, "").strip() for g, og in zip(out, groups) for e, o in zip(g, og) if e.text != o.text}
    templates = [t.split("{query}")[0].strip() for t in PROMOTE_TRAIN + DEMOTE_TRAIN]
    assert all(any(p.startswith(t) for t in templates) for p in planted)
    assert "{query}" not in "".join(planted) and inject(groups, promote=0.5, demote=0.25, seed=3) == out
    with pytest.raises(ValueError, match="promote must be a probability"):
        inject(groups, promote=2.0, demote=0.0)


def test_noise_augmentation_plants_signal_free_text_on_either_label():
    from reasonrank_train.augment import DEMOTE_TRAIN, PROMOTE_TRAIN, inject
    from reasonrank_train.data import Example

    groups = [[Example(f"q{i}", "p", f"query {i}", f"Topic {i} is on topic. More.", 1),
               *[Example(f"q{i}", f"n{j}", f"query {i}", f"Off topic {i}.{j}. More.", 0) for j in range(4)]]
              for i in range(400)]
    out = inject(groups, promote=0.0, demote=0.0, noise=0.5, seed=5)
    assert [[e.label for e in g] for g in out] == [[e.label for e in g] for g in groups]
    changed = [(e, o) for g, og in zip(out, groups) for e, o in zip(g, og) if e.text != o.text]
    assert 160 < len(changed) < 240, len(changed)
    assert {o.label for _, o in changed} == {0, 1}  # both labels get noise
    planted = [e.text.replace(o.text, "").strip() for e, o in changed]
    phrasings = [t.split("{query}")[0].strip() for t in PROMOTE_TRAIN + DEMOTE_TRAIN]
    borrowed = [p for p in planted if not any(p.startswith(t) for t in phrasings)]
    assert 40 < len(borrowed) < len(planted) - 40  # both kinds of noise
    # a borrowed sentence is another query's document's first sentence, never the group's own query's
    assert all(p.startswith(("Topic ", "Off topic ")) and p.endswith(".") for p in borrowed)
    donors = [(p.removeprefix("Off topic ").removeprefix("Topic ").split(".")[0].split()[0], e.qid[1:])
              for p, (e, _) in zip(planted, changed) if p in borrowed]
    assert all(d != own for d, own in donors), donors
    assert inject(groups, promote=0.0, demote=0.0, noise=0.5, seed=5) == out
    with pytest.raises(ValueError, match="noise must be a probability"):
        inject(groups, promote=0.0, demote=0.0, noise=-0.1)


def test_title_dropout_takes_whole_groups_titles_and_nothing_else(tmp_path):
    from reasonrank_train.augment import drop_titles
    from reasonrank_train.config import ScoreLearnConfig
    from reasonrank_train.data import Example
    from reasonrank_train.score_learn import _groups

    groups = [[Example(f"q{i}", "p", f"query {i}", "on topic", 1, title=f"Page {i}"),
               *[Example(f"q{i}", f"n{j}", f"query {i}", f"off {j}", 0, title=f"Other {j}") for j in range(4)]]
              for i in range(400)]
    out = drop_titles(groups, rate=0.5, seed=2)
    untitled = [g for g in out if g[0].title is None]
    assert 160 < len(untitled) < 240, len(untitled)
    assert all(e.title is None for g in untitled for e in g)  # whole groups, never mixed
    assert all(e.title is not None for g in out if g[0].title is not None for e in g)
    strip = [[(e.qid, e.docid, e.query, e.text, e.label) for e in g] for g in groups]
    assert [[(e.qid, e.docid, e.query, e.text, e.label) for e in g] for g in out] == strip
    assert drop_titles(groups, rate=0.5, seed=2) == out and drop_titles(groups, rate=0.0) == groups
    # score-learn applies it when configured (drop_title: 1.0 leaves no title)
    (tmp_path / "x.jsonl").write_text("")
    opts = {"model": "tiny-random", "train_file": str(tmp_path / "x.jsonl"), "output_dir": "o", "group_size": 3,
            "use_cpu": True}
    cfg = ScoreLearnConfig(**opts, drop_title=1.0)
    flat = [e for g in groups[:20] for e in g]
    assert all(e.title is None for g in _groups(cfg, flat) for e in g)
    assert all(e.title for g in _groups(ScoreLearnConfig(**opts), flat) for e in g)
    with pytest.raises(ValueError, match="drop_title must be a probability"):
        drop_titles(groups, rate=1.5)


def test_query_groups_keep_the_document_and_change_the_question(tmp_path):
    from reasonrank_train.config import ScoreLearnConfig
    from reasonrank_train.data import Example
    from reasonrank_train.groups import query_groups
    from reasonrank_train.score_learn import _groups

    exs = []
    for i in range(12):  # FAQ-like: one answer per question; answer i is mined as a negative of question i+1
        src = "faq" if i < 8 else "wiki"
        exs.append(Example(f"q{i}", f"d{i}", f"question {i}", f"answer {i}", 1, source=src))
        exs.append(Example(f"q{i}", f"d{(i - 1) % 12}", f"question {i}", f"answer {(i - 1) % 12}", 0, source=src))
    exs.append(Example("q1b", "d1", "question 1", "answer 1", 1, source="faq"))  # same text, other id
    exs.append(Example("q12", "d3", "question 12", "answer 3", 1, source="faq"))  # d3 answers two questions
    groups = query_groups(exs, negatives=3, seed=4)
    assert len(groups) == sum(e.label > 0 for e in exs)
    for g in groups:
        pos, negs = g[0], g[1:]
        assert pos.label == 1 and all(e.label == 0 for e in negs) and 1 <= len(negs) <= 3
        assert {(e.docid, e.text, e.title, e.source) for e in g} == {(pos.docid, pos.text, pos.title, pos.source)}
        assert len({e.qid for e in g}) == len(g)
        assert all(e.query != pos.query for e in negs)  # never the positive's own question text
        answers = {e.qid for e in exs if e.docid == pos.docid and e.label > 0}
        assert not answers & {e.qid for e in negs}, (pos, negs)  # never a question the document answers
        mined = {e.qid for e in exs if e.docid == pos.docid and e.label <= 0}
        src_qids = {e.qid for e in exs if e.source == pos.source}
        assert {e.qid for e in negs} <= src_qids | mined  # questions that mined it, then its own source's
    by_pos = {(g[0].qid, g[0].docid): g for g in groups}
    assert "q5" in {e.qid for e in by_pos[("q4", "d4")][1:]}  # the question that mined d4 as a negative comes first
    assert query_groups(exs, negatives=3, seed=4) == groups
    with pytest.raises(ValueError, match="query_negatives must be >= 1"):
        query_groups(exs, negatives=0)
    # score-learn adds them to the query groups when configured
    (tmp_path / "x.jsonl").write_text("")
    opts = {"model": "tiny-random", "train_file": str(tmp_path / "x.jsonl"), "output_dir": "o", "group_size": 2,
            "use_cpu": True}
    plain = _groups(ScoreLearnConfig(**opts), exs)
    both = _groups(ScoreLearnConfig(**opts, query_negatives=3), exs)
    assert all(len({e.qid for e in g}) == 1 for g in plain)
    assert len(both) == len(plain) + len(groups)
    assert sum(len({e.qid for e in g}) > 1 for g in both) == len(groups)
