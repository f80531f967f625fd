"""Planning: turning (query, documents) into backend requests, and the backend's answers into results.

A plan is a sans-IO generator: it yields typed requests (:class:`~reasonrank.backends.LabelRequest`,
:class:`~reasonrank.backends.GenerateRequest`), receives the backend's answers through ``send`` and returns
the :class:`~reasonrank.schema.RerankResult` list. :class:`reasonrank.ReasoningReranker` answers a plan with
a sync driver (``score``) or an async one (``ascore``), so the judging logic exists once for both.

Example:
    >>> from reasonrank.templates import get_template
    >>> from reasonrank.testing import ScriptedBackend
    >>> planner = Planner(PromptBuilder(get_template(None, "direct"), labels=(0, 1, 2)), ScriptedBackend(),
    ...                   mode="direct")
    >>> plan = planner.plan(["what is bm25"], ["BM25 is a ranking function", "cats"])
    >>> request = next(plan)                                   # the plan asks ...
    >>> type(request).__name__, len(request.prompts)
    ('LabelRequest', 2)
    >>> try:                                                   # ... a driver answers
    ...     plan.send([{0: -3.0, 2: -0.1}, LabelScores.failed("timeout")])
    ... except StopIteration as done:
    ...     results = done.value
    >>> [(r.label, r.error) for r in results]
    [(2, None), (0, 'timeout')]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .backends import GenerateRequest, Generation, LabelReply, LabelRequest, LabelScores, LabelSpec, Prompt
from .backends.base import LikelihoodRequest, Request
from .fusion import list_scores
from .parsing import NonFiniteScores, ParseError, calibrate, expected_score, label_distribution, parse_judgment
from .prompting import PromptBuilder, TextOps
from .schema import DocInput, Document, RerankResult, RerankStats, to_documents
from .templates import Mode

__all__ = ["PRIOR_QUERY", "Mode", "OnParseError", "Plan", "Planner", "validate_input"]

logger = logging.getLogger(__name__)

OnParseError = Literal["fallback", "raise", "report"]
PRIOR_QUERY = "N/A"
"""The content-free query a document's prior is measured with (``prior_weight``)."""
PRIOR_CACHE_SIZE = 50_000
"""Document priors one reranker keeps (the oldest are dropped first)."""
Plan = Generator[Request, Any, list[RerankResult]]
"""A planning generator: yields requests, is sent the backend's answers, returns the results."""
# Per document: (label probabilities, parsed label or None, explanation, parse_ok)
_Row = tuple[tuple[float, ...], "int | None", "str | None", bool]
_Planned = Generator[Request, Any, tuple[list[_Row], dict[int, str], list[Generation]]]


def _check_encodable(text: str, where: str) -> None:
    """Text a tokenizer cannot take (a lone surrogate such as ``"\\ud800"``) fails here, naming where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} holds a character that is not valid Unicode text ({exc.object[exc.start]!r} at "
                         f"offset {exc.start}, a lone surrogate); clean it first, e.g. "
                         "text.encode('utf-8', 'replace').decode('utf-8')") from None


def validate_input(query: object, docs: object) -> list[Document]:
    """Check a query and normalise its documents (:func:`reasonrank.schema.to_documents`).

    Raises:
        TypeError: the query is not a str, or a document is None / of an unsupported type.
        ValueError: an empty query or document, or text that is not valid Unicode (the message says where).
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty; pass a non-empty query string")
    _check_encodable(query, "query")
    documents = to_documents(docs)
    for i, d in enumerate(documents):
        if not d.text.strip() and not (d.title or "").strip():
            raise ValueError(f"docs[{i}] has empty text; remove empty documents before reranking "
                             "(an empty document cannot be judged)")
        _check_encodable(d.text, f"docs[{i}] text")
        if d.title:
            _check_encodable(d.title, f"docs[{i}] title")
    return documents


def _answers(answers: Sequence[Any], n: int, method: str) -> None:
    if len(answers) != n:
        raise ValueError(f"Backend.{method} answered {len(answers)} of {n} prompts; a backend must answer every "
                         "prompt, in order (report a failed document in its place)")


def _label_scores(replies: Sequence[LabelReply], n: int) -> list[LabelScores]:
    """The one place a :meth:`~reasonrank.backends.Backend.label_logprobs` answer is read: each reply, a
    mapping or a :class:`LabelScores`, becomes a ``LabelScores``."""
    _answers(replies, n, "label_logprobs")
    return [LabelScores.of(r) for r in replies]


@dataclass(frozen=True)
class Planner:
    """Plans the judging of documents with one reranker's settings (a snapshot; cheap to build per call).

    Attributes:
        prompts: How a (query, document) pair becomes a prompt (template, label scale, truncation).
        text_ops: The backend's text side (truncation, control strings); it is never asked to infer here.
        mode: ``"direct"`` (one label-probability pass) or ``"reasoning"`` (generate, then read the verdict).
        on_parse_error: What an output without a valid verdict gets (see :class:`reasonrank.ReasoningReranker`).
        fusion_weight: Weight of the first-stage score, or None.
        fusion_required: True when ``fusion_weight`` was passed explicitly (documents must carry scores).
        prior_weight: Direct mode: how much of each document's prior (its label distribution under
            :data:`PRIOR_QUERY`) is divided out of its label distribution (:func:`reasonrank.parsing.calibrate`);
            None or 0: none.
        prior_cache: Document priors already computed, by the document's prompt text (shared by one reranker's
            plans: a document reranked for another query costs no second pass); at most :data:`PRIOR_CACHE_SIZE`.
        likelihood_weight: Direct mode: the share of the query likelihood in the model score (the template's
            ``likelihood`` prompt; :func:`reasonrank.fusion.list_scores`); None or 0: the label score alone.
            Applied over one query's candidate list, like fusion (not by ``score_pairs``, which still reports
            each pair's ``query_logprob``).
        stats: The counters the plan updates.
    """

    prompts: PromptBuilder
    text_ops: TextOps
    mode: Mode = "reasoning"
    on_parse_error: OnParseError = "fallback"
    fusion_weight: float | None = None
    fusion_required: bool = False
    prior_weight: float | None = None
    prior_cache: dict[str, tuple[float, ...]] = field(default_factory=dict)
    likelihood_weight: float | None = None
    stats: RerankStats = field(default_factory=RerankStats)

    @property
    def spec(self) -> LabelSpec:
        """The label scale and marker the backend is asked about."""
        return LabelSpec(labels=self.prompts.labels, marker=self.prompts.template.marker)

    def plan(self, queries: Sequence[str], docs: Sequence[DocInput], *, fuse: bool = True,
             verdicts: Sequence[int] | None = None) -> Plan:
        """Plan the judging of ``docs``: one query for all (``[query]``) or one query per document.
        ``verdicts`` (reasoning mode): one known label per document, to be explained rather than judged (the
        template's ``verdict_note``; ``explain_top_k`` passes the direct-mode labels)."""
        if verdicts is not None and (self.mode != "reasoning" or len(verdicts) != len(docs)):
            raise ValueError("verdicts need mode='reasoning' and one verdict per document, got "
                             f"mode={self.mode!r} and {len(verdicts)} verdicts for {len(docs)} documents")
        for q in dict.fromkeys(queries):
            validate_input(q, [])
        documents = validate_input(queries[0], docs)
        if not documents:
            return []
        shown = {q: self.prompts.query_text(q, self.text_ops) for q in dict.fromkeys(queries)}
        per_doc = [shown[q] for q in queries] if len(queries) > 1 else [shown[queries[0]]] * len(documents)
        listwise = fuse  # one query's candidate list: the list-relative parts (likelihood, fusion) apply
        fuse = fuse and bool(self.fusion_weight)  # None or 0: the model score alone
        if fuse:
            missing = [i for i, d in enumerate(documents) if d.first_stage_score is None]
            if len(missing) == len(documents) and not self.fusion_required:
                fuse = False  # the model card's default weight: nothing to fuse with, model scores alone
            elif missing:
                raise ValueError(f"docs[{missing[0]}] has no first-stage score, which fusion_weight needs: give "
                                 "every document one (Document(first_stage_score=...) or a dict key 'score'), or "
                                 "construct the reranker without fusion_weight")
        cut = self.prompts.document_texts(documents, self.text_ops)
        n_trunc = sum(t for _, t in cut)
        if n_trunc:
            logger.info("%d of %d documents truncated to %d tokens", n_trunc, len(documents),
                        self.prompts.max_doc_tokens)
        given: Sequence[int | None] = [None] * len(documents) if verdicts is None else verdicts
        prompts = [self.prompts.prompt(q, text, verdict=v) for q, (text, _), v in zip(per_doc, cut, given)]
        if self.mode == "direct":
            keys = [text for text, _ in cut] if self.prior_weight else []
            rows, errors, gens = yield from self._plan_direct(prompts, keys)
        else:
            rows, errors, gens = yield from self._plan_reasoning(prompts)
        qlps = (yield from self._plan_likelihood(per_doc, [text for text, _ in cut], errors)) \
            if self.likelihood_weight else None
        if errors:
            self.stats.errors += len(errors)
            logger.warning("%d of %d documents could not be scored; reported with error set, score 0, ranked "
                           "last (first: %s)", len(errors), len(documents), next(iter(errors.values())))
        self.stats.documents += len(documents)
        self.stats.truncated += n_trunc
        return self._results(documents, cut, rows, errors, gens, fuse, [p.assistant_prefix for p in prompts],
                             qlps, listwise)

    def likelihood_pairs(self, queries: Sequence[str], texts: Sequence[str]) -> list[tuple[str, str]]:
        """The (context, continuation) pairs whose :meth:`~reasonrank.backends.Backend.continuation_logprobs`
        is each document's ``query_logprob``: the template's ``likelihood`` prompt around the prepared document
        text (:meth:`PromptBuilder.document_texts`), then the prompt-ready query (:meth:`PromptBuilder.query_text`)
        after a space."""
        tpl = self.prompts.template
        return [(tpl.render_likelihood(document=t), " " + q.strip()) for q, t in zip(queries, texts)]

    def _plan_likelihood(self, queries: list[str], texts: list[str],
                         errors: dict[int, str]) -> Generator[Request, Any, list[float | None]]:
        """Each judged document's query likelihood (mean log-probability per query token after the template's
        ``likelihood`` prompt); None for documents already failed. A non-finite value fails its document."""
        todo = [i for i in range(len(texts)) if i not in errors]
        answers = (yield LikelihoodRequest(self.likelihood_pairs([queries[i] for i in todo],
                                                                 [texts[i] for i in todo]))) if todo else []
        _answers(answers, len(todo), "continuation_logprobs")
        out: list[float | None] = [None] * len(texts)
        for i, v in zip(todo, answers):
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[i] = float(v)
            else:
                errors[i] = f"query likelihood: the backend returned {v!r}, not a finite number"
        return out

    def _results(self, documents: list[Document], cut: list[tuple[str, bool]], rows: list[_Row],
                 errors: dict[int, str], gens: list[Generation], fuse: bool, prefixes: list[str],
                 qlps: list[float | None] | None = None, listwise: bool = True) -> list[RerankResult]:
        labels = self.prompts.labels
        label_scores = [expected_score(probs, labels) for probs, _, _, _ in rows]
        first_stage = [float(d.first_stage_score or 0.0) for d in documents]
        mix = float(self.likelihood_weight or 0) if listwise else 0.0  # score_pairs: no list to normalise over
        model_scores, scores = list_scores(label_scores, qlps, first_stage if fuse else None, likelihood_weight=mix,
                                           fusion_weight=float(self.fusion_weight or 0))
        results = []
        for i, (doc, (_, was_cut), (probs, parsed, expl, ok)) in enumerate(zip(documents, cut, rows)):
            label = parsed if parsed is not None else labels[max(range(len(probs)), key=lambda k: (probs[k], -k))]
            failed = i in errors
            results.append(RerankResult(
                index=i, id=doc.id, text=doc.text, score=0.0 if failed else scores[i], label=label,
                label_probs=probs, explanation=expl, raw_output=(prefixes[i] + gens[i].text)
                if gens and not gens[i].error else None, parse_ok=ok, truncated=was_cut, metadata=doc.metadata,
                error=errors.get(i), model_score=model_scores[i], first_stage_score=doc.first_stage_score,
                query_logprob=qlps[i] if qlps else None))
        return results

    def _failed_row(self) -> _Row:
        return (0.0,) * len(self.prompts.labels), self.prompts.labels[0], None, False

    def _distribution(self, lp: Mapping[int, float], i: int, errors: dict[int, str]) -> tuple[float, ...] | None:
        """Label probabilities, or None with ``errors[i]`` set when the backend gave non-finite values."""
        try:
            return label_distribution(lp, self.prompts.labels)
        except NonFiniteScores as exc:
            errors[i] = str(exc)
            return None

    def _plan_direct(self, prompts: list[Prompt], keys: list[str]) -> _Planned:
        """One label-probability pass; the label is the most probable one. With ``keys`` (each document's prompt
        text, when ``prior_weight`` is set), the same request also scores under :data:`PRIOR_QUERY` each distinct
        document whose prior is not cached yet, and each distribution is calibrated by its document's prior."""
        n = len(prompts)
        todo = [k for k in dict.fromkeys(keys) if k not in self.prior_cache]
        lps = _label_scores((yield LabelRequest(prompts + [self.prompts.prompt(PRIOR_QUERY, k) for k in todo])),
                            n + len(todo))
        fresh: dict[str, tuple[float, ...]] = {}
        failed: dict[str, str] = {}
        for key, lp in zip(todo, lps[n:]):
            found: dict[int, str] = {}
            dist = None if lp.error else self._distribution(lp.logprobs, 0, found)
            if dist is None:
                failed[key] = f"document prior: {lp.error or found[0]}"
            else:
                fresh[key] = dist
        errors = {i: lp.error for i, lp in enumerate(lps[:n]) if lp.error is not None}
        # a document whose prior failed is reported, never scored uncalibrated
        errors.update({i: failed[k] for i, k in enumerate(keys) if k in failed and i not in errors})
        rows = []
        for i, lp in enumerate(lps[:n]):
            dist = None if i in errors else self._distribution(lp.logprobs, i, errors)
            if dist is not None and keys:
                dist = calibrate(dist, fresh.get(keys[i]) or self.prior_cache[keys[i]], float(self.prior_weight or 0))
            rows.append(self._failed_row() if dist is None else (dist, None, None, True))
        for key, dist in fresh.items():
            if len(self.prior_cache) >= PRIOR_CACHE_SIZE:
                self.prior_cache.pop(next(iter(self.prior_cache)))  # the oldest entry
            self.prior_cache[key] = dist
        return rows, errors, []

    def _plan_reasoning(self, prompts: list[Prompt]) -> _Planned:
        """Generate; read the label where the model wrote it, else force the verdict: the backend's own
        (``Generation.forced_logprobs``) when it computed one while generating, else in a second pass (the
        same prompt, its assistant turn the output up to the verdict marker)."""
        labels, spec = self.prompts.labels, self.spec
        gens: list[Generation] = yield GenerateRequest(prompts)
        _answers(gens, len(prompts), "generate")
        judgments = [parse_judgment(p.assistant_prefix + g.text, labels, spec.marker) for p, g in zip(prompts, gens)]
        errors = {i: g.error for i, g in enumerate(gens) if g.error}
        forced: list[int] = []
        forced_prompts: list[Prompt] = []
        own: dict[int, LabelScores] = {}  # forced verdicts the backend computed while generating
        for i, (g, j) in enumerate(zip(gens, judgments)):
            raw = prompts[i].assistant_prefix + g.text
            if i in errors or (j.ok and g.label_logprobs):
                continue
            if not j.ok and self.on_parse_error == "report":
                errors[i] = f"no valid verdict in the output: {j.error}"
                continue
            if not j.ok and self.on_parse_error == "raise":
                raise ParseError(f"docs[{i}]: {j.error}; model output was {raw[:300]!r}. Pass "
                                 "on_parse_error='fallback' to score such outputs from label probabilities")
            if not j.ok and g.forced_logprobs:
                own[i] = LabelScores(g.forced_logprobs)
                continue
            head = raw[: j.label_start].rstrip() if j.ok else raw.rstrip() + "\n" + spec.marker
            forced.append(i)
            forced_prompts.append(replace(prompts[i], assistant_prefix=head))
        forced_lps = _label_scores((yield LabelRequest(forced_prompts)), len(forced)) if forced_prompts else []
        by_doc = {**own, **dict(zip(forced, forced_lps))}
        errors.update({i: lp.error for i, lp in by_doc.items() if lp.error is not None})
        rows: list[_Row] = []
        for i, (g, j) in enumerate(zip(gens, judgments)):
            dist = None if i in errors else self._distribution(
                g.label_logprobs if (j.ok and g.label_logprobs) else by_doc[i].logprobs, i, errors)
            if dist is None:
                rows.append(self._failed_row())
                continue
            rows.append((dist, j.label if j.ok else None, j.explanation, j.ok))
        failures = sum(1 for i, j in enumerate(judgments) if not j.ok and not gens[i].error)
        if failures:
            self.stats.parse_failures += failures
            logger.warning("%d of %d outputs had no valid verdict; %s", failures, len(gens),
                           "reported as errors" if self.on_parse_error == "report" else
                           "scored from label probabilities (parse_ok=False)")
        self.stats.generated_tokens += sum(g.num_tokens for g in gens)
        return rows, errors, gens
