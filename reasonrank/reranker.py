"""The front door: :class:`ReasoningReranker`."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from .backends import Backend, Generation, LabelSpec, Prompt, create_backend
from .backends.base import FailedLabels, GenerateRequest, LabelRequest, Request
from .fusion import fuse_scores
from .metadata import model_defaults
from .models import DEFAULT_MODEL, META_FILE, read_model_meta
from .parsing import (
    NonFiniteScores,
    ParseError,
    expected_score,
    label_distribution,
    parse_judgment,
    validate_labels,
)
from .prompting import PromptBuilder
from .schema import DocInput, Document, RerankResult, RerankStats, to_documents
from .templates import PromptTemplate, get_template

__all__ = ["ReasoningReranker"]

logger = logging.getLogger(__name__)

Mode = Literal["reasoning", "direct"]
OnParseError = Literal["fallback", "raise", "report"]
# Per document: (label probabilities, parsed label or None, explanation, parse_ok)
_Row = tuple[tuple[float, ...], "int | None", "str | None", bool]


def _check_encodable(text: str, where: str) -> None:
    """Text a tokenizer cannot take (a lone surrogate such as ``"\\ud800"``) fails here, naming where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} holds a character that is not valid Unicode text ({exc.object[exc.start]!r} at "
                         f"offset {exc.start}, a lone surrogate); clean it first, e.g. "
                         "text.encode('utf-8', 'replace').decode('utf-8')") from None


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
        explain_top_k: Explain only what the user sees (direct mode): :meth:`rank` scores every candidate with
            the direct prompt, then has the model explain its final top ``explain_top_k`` results with the
            reasoning prompt (one generation each), in ``RerankResult.explanation``; ranks, scores and labels
            stay the direct pass's (the explanation's own verdict is in ``raw_output``). ``None`` (default):
            no explanations in direct mode. Reasoning mode explains every document anyway.
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
                 fusion_weight: float | None = None, explain_top_k: int | None = None, device: str | None = None,
                 dtype: Any = None, **backend_options: Any) -> None:
        meta = read_model_meta(model) if isinstance(model, str) and not isinstance(backend, Backend) else {}
        if meta:
            logger.info("%s/%s: defaults mode=%s label_scale=%s template=%s", model, META_FILE, meta.get("mode"),
                        meta.get("label_scale"), meta.get("template"))
        defaults = model_defaults(meta, mode=mode, label_scale=label_scale, template=template)
        mode, template = defaults.mode, defaults.template  # type: ignore[assignment]
        if mode not in ("reasoning", "direct"):
            raise ValueError(f"mode must be 'reasoning' or 'direct', got {mode!r}")
        self._fusion_required = fusion_weight is not None  # explicit: documents without scores are an error
        if fusion_weight is None:
            fusion_weight = meta.get("fusion_weight")  # the model card's default, if any
        if fusion_weight is not None and (isinstance(fusion_weight, bool) or
                                          not isinstance(fusion_weight, (int, float)) or not 0 <= fusion_weight <= 1):
            where = "" if self._fusion_required else f"{model}/{META_FILE}: "
            raise ValueError(f"{where}fusion_weight must be a number in [0, 1] or None, got {fusion_weight!r}"
                             + ("" if self._fusion_required else "; fix or delete it"))
        self.fusion_weight = None if fusion_weight is None else float(fusion_weight)
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
        return self._drive(self._plan([query], docs))

    def rank(self, query: str, docs: Sequence[DocInput], top_k: int | None = None) -> list[RerankResult]:
        """``score`` then sort by score (ties keep input order); keep the best ``top_k`` (all when None)."""
        self._check_top_k(top_k)
        ranked = self._ranked(self.score(query, docs), top_k)
        shown = self._to_explain(ranked)
        if not shown:
            return ranked
        return self._explained(ranked, shown, self.explainer.score(query, [docs[r.index] for r in shown]))

    async def ascore(self, query: str, docs: Sequence[DocInput]) -> list[RerankResult]:
        """Async :meth:`score` (native async for backends that have it, e.g. openai)."""
        return await self._adrive(self._plan([query], docs))

    async def arank(self, query: str, docs: Sequence[DocInput], top_k: int | None = None) -> list[RerankResult]:
        """Async :meth:`rank`."""
        self._check_top_k(top_k)
        ranked = self._ranked(await self.ascore(query, docs), top_k)
        shown = self._to_explain(ranked)
        if not shown:
            return ranked
        return self._explained(ranked, shown, await self.explainer.ascore(query, [docs[r.index] for r in shown]))

    @property
    def explainer(self) -> ReasoningReranker:
        """The reasoning-mode reranker over the same engine that writes ``explain_top_k`` explanations."""
        if self._explainer is None:
            self._explainer = ReasoningReranker(
                backend=self.backend, mode="reasoning", label_scale=self.labels, max_doc_tokens=self.max_doc_tokens,
                max_new_tokens=self.max_new_tokens, on_parse_error=self.on_parse_error,
                sanitize_documents=self.sanitize_documents, fusion_weight=0)
        return self._explainer

    def score_pairs(self, pairs: Sequence[tuple[str, DocInput]]) -> list[RerankResult]:
        """Judge (query, document) pairs of *different* queries in shared engine batches; results in input
        order. For labelling data (a teacher judging many queries), not for ranking: scores of different
        queries are not ranked against each other. Fusion (``fusion_weight``) is not applied here.

        Raises:
            ValueError / TypeError: as :meth:`score`, for any pair (the message names its index).
        """
        if isinstance(pairs, (str, bytes)) or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise TypeError("pairs must be a sequence of (query, document) tuples")
        if not pairs:
            return []
        return self._drive(self._plan([q for q, _ in pairs], [d for _, d in pairs], fuse=False))

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> ReasoningReranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_top_k(top_k: int | None) -> None:
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
            raise ValueError(f"top_k must be a non-negative int or None, got {top_k!r}")

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

    def _drive(self, plan: Generator[Request, Any, list[RerankResult]]) -> list[RerankResult]:
        try:
            req = next(plan)
            while True:
                if isinstance(req, LabelRequest):
                    answer: Any = self.backend.label_logprobs(req.prompts, self.spec)
                else:
                    answer = self.backend.generate(req.prompts, self.spec, locate=self._locate,
                                                   max_new_tokens=self.max_new_tokens)
                req = plan.send(answer)
        except StopIteration as stop:
            return stop.value

    async def _adrive(self, plan: Generator[Request, Any, list[RerankResult]]) -> list[RerankResult]:
        try:
            req = next(plan)
            while True:
                if isinstance(req, LabelRequest):
                    answer: Any = await self.backend.alabel_logprobs(req.prompts, self.spec)
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

    def _validate(self, query: object, docs: object) -> list[Document]:
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

    def _plan(self, queries: Sequence[str], docs: Sequence[DocInput], *, fuse: bool = True
              ) -> Generator[Request, Any, list[RerankResult]]:
        """Plan the judging of ``docs``: one query for all (``[query]``) or one query per document."""
        for q in dict.fromkeys(queries):
            self._validate(q, [])
        documents = self._validate(queries[0], docs)
        if not documents:
            return []
        per_doc = list(queries) if len(queries) > 1 else [queries[0]] * len(documents)
        fuse = fuse and bool(self.fusion_weight)  # None or 0: the model score alone
        if fuse:
            missing = [i for i, d in enumerate(documents) if d.first_stage_score is None]
            if len(missing) == len(documents) and not self._fusion_required:
                fuse = False  # the model card's default weight: nothing to fuse with, model scores alone
            elif missing:
                raise ValueError(f"docs[{missing[0]}] has no first-stage score, which fusion_weight needs: give "
                                 "every document one (Document(first_stage_score=...) or a dict key 'score'), or "
                                 "construct the reranker without fusion_weight")
        cut = self.prompts.document_texts(documents, self.backend)
        n_trunc = sum(t for _, t in cut)
        if n_trunc:
            logger.info("%d of %d documents truncated to %d tokens", n_trunc, len(documents), self.max_doc_tokens)
        prompts = [self._prompt(q, text) for q, (text, _) in zip(per_doc, cut)]
        if self.mode == "direct":
            rows, errors, gens = yield from self._plan_direct(prompts)
        else:
            rows, errors, gens = yield from self._plan_reasoning(per_doc, [t for t, _ in cut], prompts)
        if errors:
            self.stats.errors += len(errors)
            logger.warning("%d of %d documents could not be scored; reported with error set, score 0, ranked "
                           "last (first: %s)", len(errors), len(documents), next(iter(errors.values())))
        self.stats.documents += len(documents)
        self.stats.truncated += n_trunc
        results = []
        labels = self.labels
        model_scores = [expected_score(probs, labels) for probs, _, _, _ in rows]
        scores = model_scores if not fuse else \
            fuse_scores(model_scores, [float(d.first_stage_score or 0.0) for d in documents], float(self.fusion_weight or 0))
        for i, (doc, (_, was_cut), (probs, parsed, expl, ok)) in enumerate(zip(documents, cut, rows)):
            label = parsed if parsed is not None else labels[max(range(len(probs)), key=lambda k: (probs[k], -k))]
            failed = i in errors
            results.append(RerankResult(
                index=i, id=doc.id, text=doc.text, score=0.0 if failed else scores[i], label=label,
                label_probs=probs, explanation=expl, raw_output=(self.template.assistant_prefix + gens[i].text)
                if gens and not gens[i].error else None, parse_ok=ok, truncated=was_cut, metadata=doc.metadata,
                error=errors.get(i), model_score=model_scores[i], first_stage_score=doc.first_stage_score))
        return results

    def _failed_row(self) -> _Row:
        return (0.0,) * len(self.labels), self.labels[0], None, False

    def _plan_direct(self, prompts: list[Prompt]) -> Generator[Request, Any, tuple[list[_Row], dict[int, str],
                                                                                   list[Generation]]]:
        """One label-probability pass; the label is the most probable one."""
        lps = yield LabelRequest(prompts)
        errors = {i: lp.error for i, lp in enumerate(lps) if isinstance(lp, FailedLabels)}
        rows = []
        for i, lp in enumerate(lps):
            dist = None if i in errors else self._distribution(lp, i, errors)
            rows.append(self._failed_row() if dist is None else (dist, None, None, True))
        return rows, errors, []

    def _distribution(self, lp: dict[int, float], i: int, errors: dict[int, str]) -> tuple[float, ...] | None:
        """Label probabilities, or None with ``errors[i]`` set when the backend gave non-finite values."""
        try:
            return label_distribution(lp, self.labels)
        except NonFiniteScores as exc:
            errors[i] = str(exc)
            return None

    def _plan_reasoning(self, queries: list[str], doc_texts: list[str], prompts: list[Prompt]
                        ) -> Generator[Request, Any, tuple[list[_Row], dict[int, str], list[Generation]]]:
        """Generate; read the label where the model wrote it, else force the verdict in a second pass."""
        labels, prefix = self.labels, self.template.assistant_prefix
        gens = yield GenerateRequest(prompts)
        judgments = [parse_judgment(prefix + g.text, labels, self.spec.marker) for g in gens]
        errors = {i: g.error for i, g in enumerate(gens) if g.error}
        forced: list[int] = []
        forced_prompts: list[Prompt] = []
        for i, (g, j) in enumerate(zip(gens, judgments)):
            raw = prefix + g.text
            if i in errors or (j.ok and g.label_logprobs):
                continue
            if not j.ok and self.on_parse_error == "report":
                errors[i] = f"no valid verdict in the output: {j.error}"
                continue
            if not j.ok and self.on_parse_error == "raise":
                raise ParseError(f"docs[{i}]: {j.error}; model output was {raw[:300]!r}. Pass "
                                 "on_parse_error='fallback' to score such outputs from label probabilities")
            head = raw[: j.label_start].rstrip() if j.ok else raw.rstrip() + "\n" + self.spec.marker
            forced.append(i)
            forced_prompts.append(self._prompt(queries[i], doc_texts[i], assistant_prefix=head))
        forced_lps = (yield LabelRequest(forced_prompts)) if forced_prompts else []
        by_doc = dict(zip(forced, forced_lps))
        errors.update({i: lp.error for i, lp in by_doc.items() if isinstance(lp, FailedLabels)})
        rows: list[_Row] = []
        for i, (g, j) in enumerate(zip(gens, judgments)):
            dist = None if i in errors else self._distribution(
                g.label_logprobs if (j.ok and g.label_logprobs) else by_doc[i], i, errors)
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
