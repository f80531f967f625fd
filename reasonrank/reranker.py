"""The front door: :class:`ReasoningReranker`.

The constructor checks the settings and picks the backend. Each verb builds a
:class:`reasonrank.planning.Planner` from the current settings and answers its plan's requests with the
backend: a sync driver (``score``, ``rank``, ``score_pairs``) and an async one (``ascore``, ``arank``)
over the same plan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .backends import Backend, LabelRequest, LabelSpec, Prompt, create_backend
from .backends.base import LikelihoodRequest
from .metadata import model_defaults
from .models import DEFAULT_MODEL, META_FILE, read_model_meta
from .parsing import parse_judgment, validate_labels
from .planning import Mode, OnParseError, Plan, Planner
from .prompting import PromptBuilder
from .schema import DocInput, RerankResult, RerankStats
from .templates import PromptTemplate, get_template

__all__ = ["Mode", "ReasoningReranker"]  # Mode: the type of `mode=` (adapters import it from here)

logger = logging.getLogger(__name__)


class ReasoningReranker:
    """Pointwise reasoning reranker over a small instruct LM.

    ``mode="reasoning"`` (InteRank): the model writes a short explanation, then ``Relevance: <label>``;
    the score is the expected label under the label-token probabilities at the label position.
    ``mode="direct"`` (ProRank): one forward pass per document; the score is the expected label from the
    label-token probabilities right after ``Relevance:``.

    Args:
        model: Hub id, local directory, ``.gguf`` file, ``"smollm2-local"``, or (for the openai backend) the
            served model name. Defaults to :data:`reasonrank.models.DEFAULT_MODEL`.
        backend: Registered backend name (``"transformers"``, ``"vllm"``, ``"openai"``) or a ready
            :class:`~reasonrank.backends.Backend` instance (share one engine between rerankers).
        mode: ``"reasoning"`` or ``"direct"``. Default: the mode recorded in the model directory's
            ``reasonrank.json`` (written by ``reasonrank-train``), else ``"reasoning"``.
        label_scale: The graded labels, e.g. ``(0, 1, 2)`` or ``(0, 1)``; an int ``n`` means ``0..n``.
            Default: the recorded scale, else ``(0, 1, 2)``.
        template: Template name, YAML/JSON file, mapping or :class:`PromptTemplate`; default: the recorded
            template, else the mode's built-in one.
        max_doc_tokens: Documents are cut to this many tokens (never the query or instruction); flagged.
        max_new_tokens: Generation budget for explanation + verdict (reasoning mode).
        batch_size: Documents per engine batch.
        on_parse_error: ``"fallback"``: an unparseable output is scored from label probabilities after
            forcing the verdict marker, with ``parse_ok=False``; ``"raise"``: raise :class:`ParseError`;
            ``"report"``: no second pass, the result gets ``error`` set (score 0, ranked last), e.g. for a
            teacher whose unparsed outputs are discarded anyway.
        sanitize_documents: Mask verdict-like text (``Relevance: 2``) and break chat control strings
            (``<|im_end|>``) inside documents before they reach the prompt (prompt-injection defence, see
            :mod:`reasonrank.safety`); results keep the original text.
        fusion_weight: Score fusion (off when None): ``score = (1 - w) * model score + w * first-stage score``
            (min-max normalised over the candidates), for documents that carry a first-stage score
            (``Document.first_stage_score`` or a dict's ``"score"``); tune ``w`` on a dev fold
            (:func:`reasonrank.fusion.tune_fusion_weight`). Results keep ``model_score`` and
            ``first_stage_score``. When None, the model's ``reasonrank.json`` may supply a weight tuned at
            training time (the shipped ``reasonrank-tiny`` does); that default fuses only when every
            document carries a first-stage score, while a weight passed here requires them. Pass ``0`` to
            rank by the model score alone.
        prior_weight: Direct mode: discount what the model thinks of a document whatever is asked. Each
            document is also scored under a content-free query (:data:`reasonrank.planning.PRIOR_QUERY`, in
            the same engine batches; cached per document text, so a document reranked again costs nothing
            extra) and its label distribution is divided by that prior to the power ``prior_weight``
            (:func:`reasonrank.parsing.calibrate`; 1: pointwise mutual information). Results carry the
            calibrated scores, labels and ``label_probs``. Costs up to a second forward pass per new
            document; docs/benchmarks.md ("Document prior") measures what it buys. None (default): the
            model's ``reasonrank.json`` may supply one; 0: off.
        likelihood_weight: Direct mode: mix the query likelihood into the model score (UPR, Sachan et al.
            2022): each candidate also gets ``query_logprob``, the mean log-probability per query token given
            the document under the same model (the template's ``likelihood`` prompt; one more forward pass
            per document, transformers backend), and the model score becomes ``(1 - w) * label score + w *
            minmax(query_logprob)`` over the candidate list (:func:`reasonrank.fusion.list_scores`), before
            any fusion. Label probabilities and labels stay the label pass's. docs/benchmarks.md ("Query
            likelihood") measures it. None (default): the model's ``reasonrank.json`` may supply one (applied
            where the backend computes likelihoods, else logged and left out); 0: off.
        explain_top_k: Explain only what the user sees (direct mode): :meth:`rank` scores every candidate with
            the direct prompt, then has the model explain its final top ``explain_top_k`` results with the
            reasoning prompt (one generation each), in ``RerankResult.explanation``. The reasoning prompt
            states each result's direct-mode label and asks why it deserves it (the template's
            ``verdict_note``), and the explanation opens with that label in words (``verdict_lead``: "The
            document is relevant to the query because it ..."), so it argues the label shown next to it; ranks,
            scores and labels stay the direct pass's (the explanation's own verdict is in ``raw_output``).
            ``None`` (default): no explanations in direct mode. Reasoning mode explains every document anyway.
        device: Device for local backends (auto-detected when None).
        dtype: Model dtype for local backends (auto when None).
        **backend_options: Passed to the backend (e.g. ``trust_remote_code``, ``base_url``).

    Example:
        >>> rr = ReasoningReranker("smollm2-local", mode="direct")            # doctest: +SKIP
        >>> [r.index for r in rr.rank("what is bm25", ["BM25 is a ranking function", "cats"])]  # doctest: +SKIP
        [0, 1]
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, backend: str | Backend = "transformers",
                 mode: Mode | None = None, label_scale: int | Sequence[int] | None = None,
                 template: str | Path | PromptTemplate | dict[str, Any] | None = None,
                 max_doc_tokens: int = 1024, max_new_tokens: int = 256, batch_size: int = 8,
                 on_parse_error: OnParseError = "fallback", sanitize_documents: bool = True,
                 fusion_weight: float | None = None, prior_weight: float | None = None,
                 likelihood_weight: float | None = None, explain_top_k: int | None = None, device: str | None = None,
                 dtype: Any = None, **backend_options: Any) -> None:
        if isinstance(backend, Backend):  # a ready engine: the defaults of the model it was built for
            meta = dict(backend.model_meta)
        else:
            meta = read_model_meta(model) if isinstance(model, str) else {}
            if meta:
                logger.info("%s/%s: defaults mode=%s label_scale=%s template=%s", model, META_FILE,
                            meta.get("mode"), meta.get("label_scale"), meta.get("template"))
        defaults = model_defaults(meta, mode=mode, label_scale=label_scale, template=template)
        mode, template = defaults.mode, defaults.template  # type: ignore[assignment]
        if mode not in ("reasoning", "direct"):
            raise ValueError(f"mode must be 'reasoning' or 'direct', got {mode!r}")
        self._fusion_required = fusion_weight is not None  # explicit: documents without scores are an error
        if fusion_weight is None:
            fusion_weight = meta.get("fusion_weight")  # the model card's default, if any
        self.fusion_weight = None if fusion_weight is None else self._unit_weight(
            "fusion_weight", fusion_weight, "" if self._fusion_required else f"{model}/{META_FILE}: ")
        self.prior_weight = self._direct_weight("prior_weight", prior_weight, meta.get("prior_weight"), mode, model)
        self.likelihood_weight = self._direct_weight("likelihood_weight", likelihood_weight,
                                                     meta.get("likelihood_weight"), mode, model)
        self._prior_cache: dict[str, tuple[float, ...]] = {}
        if on_parse_error not in ("fallback", "raise", "report"):
            raise ValueError(f"on_parse_error must be 'fallback', 'raise' or 'report', got {on_parse_error!r}")
        for name, val in (("max_doc_tokens", max_doc_tokens), ("max_new_tokens", max_new_tokens),
                          ("batch_size", batch_size), ("explain_top_k", explain_top_k)):
            if name == "explain_top_k" and val is None:
                continue
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}" +
                                 ("; pass None for no explanations" if name == "explain_top_k" else ""))
        if explain_top_k is not None and mode != "direct":
            raise ValueError("explain_top_k explains the top results of a direct-mode ranking; reasoning mode "
                             "explains every document already: pass mode='direct' or drop explain_top_k")
        self.explain_top_k = explain_top_k
        self._explainer: ReasoningReranker | None = None
        self.labels = validate_labels(defaults.label_scale)
        self.mode: Mode = mode
        self.template = get_template(template, mode)
        self.spec = LabelSpec(labels=self.labels, marker=self.template.marker)
        self.max_doc_tokens = max_doc_tokens
        self.prompts = PromptBuilder(template=self.template, labels=self.labels, max_doc_tokens=max_doc_tokens,
                                     sanitize=bool(sanitize_documents))
        self.max_new_tokens = max_new_tokens
        self.on_parse_error: OnParseError = on_parse_error
        self.sanitize_documents = bool(sanitize_documents)
        self.stats = RerankStats()
        if isinstance(backend, Backend):
            if backend_options or device is not None or dtype is not None:
                raise ValueError("backend options (device, dtype, ...) cannot be given with a ready Backend "
                                 "instance; configure the instance instead")
            self.backend = backend
        else:
            opts = {"batch_size": batch_size, **backend_options}
            if device is not None:
                opts["device"] = device
            if dtype is not None:
                opts["dtype"] = dtype
            self.backend = create_backend(backend, model, **opts)
            self.backend.model_meta = MappingProxyType(dict(meta))
        if self.likelihood_weight and likelihood_weight is None and not self.backend.computes_likelihood:
            logger.warning("%s: the model card's likelihood_weight is not applied: the %s backend does not compute "
                           "query likelihoods (use the transformers backend for it)", model, self.backend.name)
            self.likelihood_weight = None  # a card's default; a weight passed here is required (an error at use)

    def __repr__(self) -> str:
        return (f"ReasoningReranker(backend={self.backend.describe()!r}, mode={self.mode!r}, labels={self.labels}, "
                f"template={self.template.name!r})")

    # ------------------------------------------------------------------ public API
    def score(self, query: str, docs: Sequence[DocInput]) -> list[RerankResult]:
        """Judge every document; results in input order. Empty ``docs`` gives ``[]``.

        Raises:
            ValueError: empty/blank query or document.
            TypeError: a document is None or of an unsupported type (the message names its index).
            ParseError: unparseable output with ``on_parse_error="raise"``.
        """
        return self._drive(self._planner().plan([query], docs))

    def rank(self, query: str, docs: Sequence[DocInput], top_k: int | None = None) -> list[RerankResult]:
        """``score`` then sort by score (ties keep input order); keep the best ``top_k`` (all when None)."""
        self._check_top_k(top_k)
        ranked = self._ranked(self.score(query, docs), top_k)
        shown = self._to_explain(ranked)
        if not shown:
            return ranked
        return self._explained(ranked, shown, self.explainer._drive(self._explain_plan(query, docs, shown)))

    async def ascore(self, query: str, docs: Sequence[DocInput]) -> list[RerankResult]:
        """Async :meth:`score` (native async for backends that have it, e.g. openai)."""
        return await self._adrive(self._planner().plan([query], docs))

    async def arank(self, query: str, docs: Sequence[DocInput], top_k: int | None = None) -> list[RerankResult]:
        """Async :meth:`rank`."""
        self._check_top_k(top_k)
        ranked = self._ranked(await self.ascore(query, docs), top_k)
        shown = self._to_explain(ranked)
        if not shown:
            return ranked
        return self._explained(ranked, shown, await self.explainer._adrive(self._explain_plan(query, docs, shown)))

    @property
    def explainer(self) -> ReasoningReranker:
        """The reasoning-mode reranker over the same engine that writes ``explain_top_k`` explanations."""
        if self._explainer is None:
            self._explainer = ReasoningReranker(
                backend=self.backend, mode="reasoning", label_scale=self.labels, max_doc_tokens=self.max_doc_tokens,
                max_new_tokens=self.max_new_tokens, on_parse_error=self.on_parse_error,
                sanitize_documents=self.sanitize_documents, fusion_weight=0)
        return self._explainer

    def score_pairs(self, pairs: Sequence[tuple[str, DocInput]], *,
                    verdicts: Sequence[int] | None = None) -> list[RerankResult]:
        """Judge (query, document) pairs of *different* queries in shared engine batches; results in input
        order. For labelling data (a teacher judging many queries), not for ranking: scores of different
        queries are not ranked against each other. Fusion (``fusion_weight``) is not applied here.
        ``verdicts`` (reasoning mode): one known label per pair, to be explained (the template's
        ``verdict_note``), as ``explain_top_k`` explains direct-mode labels.

        Raises:
            ValueError / TypeError: as :meth:`score`, for any pair (the message names its index).
        """
        if isinstance(pairs, (str, bytes)) or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise TypeError("pairs must be a sequence of (query, document) tuples")
        if not pairs:
            return []
        return self._drive(self._planner().plan([q for q, _ in pairs], [d for _, d in pairs], fuse=False,
                                                verdicts=verdicts))

    def explain_verdicts(self, shown: Sequence[RerankResult]) -> list[int] | None:
        """The labels ``explain_top_k`` asks the explainer to explain (those of ``shown``), or None when the
        explainer's template has no ``verdict_note`` (then it judges afresh)."""
        return [r.label for r in shown] if self.explainer.template.verdict_note else None

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> ReasoningReranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _direct_weight(name: str, given: object, card: object, mode: str, model: object) -> float | None:
        """A checked direct-mode weight (``prior_weight``, ``likelihood_weight``): the one given, else the
        model card's (which applies to direct mode only, the mode it was tuned for)."""
        if given is None and (card is None or mode != "direct"):
            return None
        value = ReasoningReranker._unit_weight(name, given if given is not None else card,
                                               "" if given is not None else f"{model}/{META_FILE}: ")
        if value and mode != "direct":
            raise ValueError(f"{name} applies to direct-mode scores; pass mode='direct' or drop {name}")
        return value

    @staticmethod
    def _unit_weight(name: str, value: object, where: str) -> float:
        """``value`` as a float in [0, 1]; else an error naming the setting (``where``: the model card it came
        from, or "" when it was passed)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{where}{name} must be a number in [0, 1] or None, got {value!r}"
                             + ("; fix or delete it" if where else ""))
        return float(value)

    @staticmethod
    def _check_top_k(top_k: int | None) -> None:
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
            raise ValueError(f"top_k must be a non-negative int or None, got {top_k!r}")

    def _explain_plan(self, query: str, docs: Sequence[DocInput], shown: list[RerankResult]) -> Plan:
        """The explainer's plan for the ``shown`` results, each given its direct-mode label to explain
        (:meth:`explain_verdicts`)."""
        return self.explainer._planner().plan([query], [docs[r.index] for r in shown],
                                              verdicts=self.explain_verdicts(shown))

    def _to_explain(self, ranked: list[RerankResult]) -> list[RerankResult]:
        if not self.explain_top_k:
            return []
        return [r for r in ranked[: self.explain_top_k] if r.error is None]

    @staticmethod
    def _explained(ranked: list[RerankResult], shown: list[RerankResult],
                   judged: list[RerankResult]) -> list[RerankResult]:
        """``ranked`` with the reasoning pass's explanation of each ``shown`` result attached."""
        by_index = {r.index: j for r, j in zip(shown, judged)}
        return [replace(r, explanation=by_index[r.index].explanation, raw_output=by_index[r.index].raw_output)
                if r.index in by_index else r for r in ranked]

    @staticmethod
    def _ranked(results: list[RerankResult], top_k: int | None) -> list[RerankResult]:
        order = sorted(results, key=lambda r: (r.error is not None, -r.score, r.index))  # failed docs last
        if top_k is not None:
            order = order[:top_k]
        return [replace(r, rank=k + 1) for k, r in enumerate(order)]

    def _drive(self, plan: Plan) -> list[RerankResult]:
        try:
            req = next(plan)
            while True:
                if isinstance(req, LabelRequest):
                    answer: Any = self.backend.label_logprobs(req.prompts, self.spec)
                elif isinstance(req, LikelihoodRequest):
                    answer = self.backend.continuation_logprobs(req.pairs)
                else:
                    answer = self.backend.generate(req.prompts, self.spec, locate=self._locate,
                                                   max_new_tokens=self.max_new_tokens)
                req = plan.send(answer)
        except StopIteration as stop:
            return stop.value

    async def _adrive(self, plan: Plan) -> list[RerankResult]:
        try:
            req = next(plan)
            while True:
                if isinstance(req, LabelRequest):
                    answer: Any = await self.backend.alabel_logprobs(req.prompts, self.spec)
                elif isinstance(req, LikelihoodRequest):
                    answer = await self.backend.acontinuation_logprobs(req.pairs)
                else:
                    answer = await self.backend.agenerate(req.prompts, self.spec, locate=self._locate,
                                                          max_new_tokens=self.max_new_tokens)
                req = plan.send(answer)
        except StopIteration as stop:
            return stop.value

    def _locate(self, text: str) -> int | None:
        prefix = self.template.assistant_prefix
        j = parse_judgment(prefix + text, self.labels, self.spec.marker)
        return None if j.label_start is None or not j.ok else j.label_start - len(prefix)

    def _prompt(self, query: str, doc_text: str, assistant_prefix: str | None = None) -> Prompt:
        return self.prompts.prompt(query, doc_text, assistant_prefix=assistant_prefix)

    def _planner(self) -> Planner:
        """The planner with this reranker's current settings."""
        return Planner(prompts=self.prompts, text_ops=self.backend, mode=self.mode, on_parse_error=self.on_parse_error,
                       fusion_weight=self.fusion_weight, fusion_required=self._fusion_required,
                       prior_weight=self.prior_weight, prior_cache=self._prior_cache,
                       likelihood_weight=self.likelihood_weight, stats=self.stats)
