"""Transformers backend: local inference on CPU/GPU (the default backend).

Batches are sorted by length (order restored), left-padded, run under ``torch.inference_mode``.
Direct scoring is one forward pass per document reading only the last position's logits; reasoning
generates greedily, records the label-token log-probabilities at every step (the candidates' columns minus
the logsumexp: a few floats per step, no vocabulary-sized log-softmax) and stops each sequence as soon as its
verdict's label is written (a tensor test of the last token; only rows ending in a label token decode their
last 12 ids), so the per-step overhead does not grow with the generated length. An output without a verdict
gets its forced verdict (output + ``"\\n" + marker``) from one more forward pass that continues the
generation's KV cache, fed only what the cache lacks (the never-fed last token, tokens the forced prompt
tokenises differently, then the marker), instead of a second pass that re-prefills prompt + output; where
the cache cannot be continued exactly (not a plain ``DynamicCache``, an assistant prefix ending in whitespace
with an empty output) the reranker re-prefills as before.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._deps import require
from ..models import convert_gguf, resolve_model
from .base import Backend, Generation, LabelSpec, LocateLabel, Prompt
from .dtypes import cpu_has_bf16, resolve_dtype
from .hf_compile import compile_blocks, warm_up_compiled
from .hf_generation import continuable, generation_hooks, output_cache
from .tokenization import (
    LocalTokenizerMixin,
    continuation_chunk,
    eos_pad_ids,
    finish_generation,
    left_pad,
    per_label_logprobs,
    until_stop,
    verdict_finder,
)

__all__ = ["MIN_SHARED_PREFIX", "TransformersBackend", "cpu_has_bf16", "length_sorted_batches"]

logger = logging.getLogger(__name__)
MIN_SHARED_PREFIX = 16
"""Shortest shared prompt prefix (tokens) worth a separate cached forward pass."""
_DEVICE_LOGGED: set[str] = set()


def length_sorted_batches(lengths: Sequence[int], batch_size: int,
                          max_tokens: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to cut padding: at most
    ``batch_size`` rows and, with ``max_tokens``, at most that many tokens per batch counting padding
    (rows x longest row); a row longer than ``max_tokens`` gets a batch of its own.

    Example:
        >>> length_sorted_batches([3, 10, 1, 7], 2)
        [[1, 3], [0, 2]]
        >>> length_sorted_batches([3, 10, 1, 7], 4, max_tokens=16)
        [[1], [3, 0], [2]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        cur = batches[-1] if batches else None
        if cur is None or len(cur) >= batch_size or \
                (max_tokens is not None and lengths[cur[0]] * (len(cur) + 1) > max_tokens):
            batches.append([i])
        else:
            cur.append(i)
    return batches


def _pick_device(torch: Any, device: str | None) -> str:
    if device:
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(torch: Any, device: str, dtype: Any) -> Any:
    chosen = resolve_dtype(dtype, torch)
    if chosen is not None:
        return chosen
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


class TransformersBackend(LocalTokenizerMixin, Backend):
    """Hugging Face transformers inference.

    Args:
        model: Hub id, local directory, local ``.gguf`` file, the alias ``"smollm2-local"``, or an already
            loaded ``PreTrainedModel`` (then ``tokenizer`` is required; device/dtype moves are not applied).
        tokenizer: The tokenizer of an already loaded model.
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``; auto-detected when None (logged once).
        dtype: torch dtype or its name; auto: bf16 on GPUs that support it, fp16 on other GPUs; on CPU bf16
            where the CPU computes it natively (AVX512-BF16/AMX, :func:`cpu_has_bf16`: ~1.7x faster than fp32
            there), fp32 elsewhere. Under bf16 the label probabilities come from an fp32 head, so they do
            not tie; they differ from fp32 by at most a few hundredths (tests/test_backend_dtype.py).
        batch_size: Most documents per forward batch.
        generation_batch_size: Most documents per ``generate`` batch; default ``4 x batch_size``. A decoding
            step reads every weight once whatever the rows (on a CPU it is bound by memory bandwidth), so wide
            batches pay: 16 rows gave 1.37x the generated tokens/s of 8 (docs/benchmarks.md).
        max_batch_tokens: Most tokens per batch, padding included (rows x longest row; for generation, prompt
            + ``max_new_tokens``): long documents get smaller batches, so memory stays bounded whatever
            ``batch_size`` is; a single longer prompt runs alone. None: rows are bounded by ``batch_size`` only.
        trust_remote_code: Allow model repositories' own code (off unless asked).
        revision: Hub revision to pin.
        cache_gguf: Convert a ``.gguf`` once to safetensors under the reasonrank cache and load that next time.
        generation_kwargs: Extra ``generate`` options (e.g. ``{"do_sample": True, "temperature": 0.7}``);
            greedy decoding by default.
        show_progress: tqdm progress bars; default: when the logger is at INFO and there is more than a batch.
        reuse_prefix: Direct scoring, generation and the forced-verdict pass compute the token prefix that all
            prompts of a call share (system, instruction, query: the templates put the document last) once,
            and reuse its KV cache for every document, when it is at least :data:`MIN_SHARED_PREFIX` tokens.
            Log-probabilities and greedy outputs equal the no-reuse path to float error
            (tests/test_prefix_reuse.py).
        compile: ``torch.compile`` the model's MLP and RMSNorm blocks (:mod:`.hf_compile`) and compile them
            now, on dummy batches: ~9 s at start-up for 5-13% more documents/s on a CPU (docs/benchmarks.md,
            "Compiled blocks"); scores equal eager mode's to float error. For long-lived rerankers
            (``reasonrank serve --backend-opt compile=true``), not one-off calls.
        model_kwargs: Extra ``from_pretrained`` options.
    """

    name = "transformers"

    def __init__(self, model: Any, *, tokenizer: Any = None, device: str | None = None, dtype: Any = None,
                 batch_size: int = 8, generation_batch_size: int | None = None,
                 max_batch_tokens: int | None = 16384,
                 trust_remote_code: bool = False, revision: str | None = None, cache_gguf: bool = True,
                 generation_kwargs: dict[str, Any] | None = None, show_progress: bool | None = None,
                 reuse_prefix: bool = True, compile: bool = False,
                 model_kwargs: dict[str, Any] | None = None) -> None:
        self.torch = require("torch", "transformers", purpose="the transformers backend")
        self.transformers = require("transformers", "transformers", purpose="the transformers backend")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        if generation_batch_size is not None and (not isinstance(generation_batch_size, int)
                                                  or generation_batch_size < 1):
            raise ValueError(f"generation_batch_size must be a positive int or None, got {generation_batch_size!r}")
        self.generation_batch_size = generation_batch_size or 4 * batch_size
        if max_batch_tokens is not None and (not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
            raise ValueError(f"max_batch_tokens must be a positive int or None, got {max_batch_tokens!r}")
        self.max_batch_tokens = max_batch_tokens
        self.device = _pick_device(self.torch, device)
        self.dtype = _pick_dtype(self.torch, self.device, dtype)
        self.generation_kwargs = dict(generation_kwargs or {})
        self.show_progress = show_progress
        self.reuse_prefix = bool(reuse_prefix)
        if isinstance(model, str):
            self.model_name = model
            self.tokenizer, self.model = self._load(resolve_model(model), trust_remote_code=trust_remote_code,
                                                    revision=revision, cache_gguf=cache_gguf,
                                                    model_kwargs=dict(model_kwargs or {}))
        else:
            if tokenizer is None or not hasattr(model, "generate"):
                raise TypeError("pass model as a name/path, or a loaded transformers causal LM together with "
                                "tokenizer=...")
            self.model_name = type(model).__name__
            self.tokenizer, self.model = tokenizer, model
            self.device, self.dtype = str(model.device), model.dtype
        if self.device not in _DEVICE_LOGGED:  # after loading: a loaded model's own device is the one used
            _DEVICE_LOGGED.add(self.device)
            logger.info("reasonrank transformers backend on device=%s dtype=%s", self.device, self.dtype)
        self.model.eval()
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.eos_ids, pad_id = eos_pad_ids(
            tok, self.model.generation_config.eos_token_id if self.model.generation_config else None)
        if pad_id is None:
            raise ValueError("the tokenizer has neither a padding nor an end-of-sequence token; set "
                             "tokenizer.pad_token before passing it")
        self.pad_id: int = pad_id
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 0) or 0) or None
        params = __import__("inspect").signature(self.model.forward).parameters
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.2x: cache
        self.compiled_blocks = 0
        if compile:
            self.compiled_blocks = compile_blocks(self.model)
            warm_up_compiled(self.torch, self.model, self.pad_id, self.device)

    # ------------------------------------------------------------------ loading
    def _load(self, path: str, *, trust_remote_code: bool, revision: str | None, cache_gguf: bool,
              model_kwargs: dict[str, Any]) -> tuple[Any, Any]:
        tf = self.transformers
        common = {"trust_remote_code": trust_remote_code, **({"revision": revision} if revision else {})}
        mk = {"dtype": self.dtype, **common, **model_kwargs}
        if path.endswith(".gguf"):
            gguf = Path(path)
            if cache_gguf:
                try:
                    path = str(convert_gguf(gguf, trust_remote_code=trust_remote_code))
                except OSError as exc:  # read-only cache: load the GGUF directly
                    logger.warning("could not cache the GGUF conversion (%s); loading it directly", exc)
                    cache_gguf = False
            if not cache_gguf:
                require("gguf", "transformers", purpose="loading .gguf files")
                tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **common)
                model = tf.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                                **{**mk, "dtype": self.torch.float32})
                return tok, model.to(device=self.device, dtype=self.dtype)
        tok = tf.AutoTokenizer.from_pretrained(path, **common)
        model = tf.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, **mk)
        return tok, model.to(self.device)

    def describe(self) -> str:
        return f"transformers:{self.model_name} on {self.device} ({str(self.dtype).replace('torch.', '')})"

    # ------------------------------------------------------------------ tensors
    def _batch_tensors(self, seqs: list[list[int]]) -> dict[str, Any]:
        return left_pad(self.torch, seqs, self.pad_id, self.device)

    def _progress(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        show = self.show_progress
        if show is None:
            show = total > 1 and logger.isEnabledFor(logging.INFO)
        return tqdm(total=total, desc=desc, disable=not show, leave=False)

    # ------------------------------------------------------------------ scoring
    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        torch = self.torch
        seqs, flat = self.label_inputs(prompts, spec)
        index = torch.tensor([tid for _, tid in flat], device=self.device)
        out: list[dict[int, float]] = [{} for _ in seqs]
        batches = length_sorted_batches([len(s) for s in seqs], self.batch_size, self.max_batch_tokens)
        with torch.inference_mode(), self._progress(len(batches), "scoring") as bar:
            prefix = self._shared_prefix(seqs)
            for batch in batches:
                enc = self._batch_tensors([seqs[i][len(prefix[0]) if prefix else 0:] for i in batch])
                lp = self._last_logprobs(enc, prefix).index_select(-1, index).cpu().tolist()
                for row, i in enumerate(batch):
                    out[i] = per_label_logprobs(flat, lp[row])
                bar.update(1)
        return out

    def continuation_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Mean log-probability per token of each continuation after its context (plain text; fp32
        log-softmax over the continuation's positions only, through an fp32 head under bf16/fp16)."""
        torch = self.torch
        seqs, starts = self.likelihood_inputs(pairs)
        out = [0.0] * len(seqs)
        batches = length_sorted_batches([len(s) for s in seqs], self.batch_size, self.max_batch_tokens)
        with torch.inference_mode(), self._progress(len(batches), "query likelihood") as bar:
            for batch in batches:
                keep = max(len(seqs[i]) - starts[i] for i in batch) + 1  # each continuation + the token before
                logits = self._tail_logits(self._batch_tensors([seqs[i] for i in batch]), keep)
                for row, i in enumerate(batch):
                    n = len(seqs[i]) - starts[i]
                    target = torch.tensor(seqs[i][starts[i]:], device=logits.device)
                    lp = torch.log_softmax(logits[row, keep - n - 1:keep - 1, :], dim=-1)
                    out[i] = float(lp.gather(-1, target[:, None]).mean())
                bar.update(1)
        return out

    def _tail_logits(self, enc: dict[str, Any], keep: int, **kw: Any) -> Any:
        """fp32 logits of the last ``keep`` positions of ``self.model(**enc, **kw)`` (rows are left-padded, so
        they end together); under bf16/fp16 the final hidden states go through the output head in fp32."""
        kw = {self._keep_kw: keep, **kw} if self._keep_kw else kw
        if self.dtype == self.torch.float32:
            return self.model(**enc, **kw).logits[:, -keep:, :].float()
        hidden = self.model(**enc, output_hidden_states=True, **kw).hidden_states[-1][:, -keep:, :].float()
        head = self.model.get_output_embeddings()
        logits = hidden @ head.weight.float().T
        return logits + head.bias.float() if getattr(head, "bias", None) is not None else logits

    def _shared_prefix(self, seqs: list[list[int]]) -> tuple[list[int], Any] | None:
        """The token prefix every prompt of the call shares (system, instruction, query: templates put the
        document last) and its KV cache, computed once; None when reuse is off or the prefix is short."""
        if not self.reuse_prefix or len(seqs) < 2:
            return None
        first, n = seqs[0], min(len(s) for s in seqs) - 1  # every prompt keeps >= 1 token of its own
        for s in seqs[1:]:
            n = next((k for k in range(n) if s[k] != first[k]), n)
        if n < MIN_SHARED_PREFIX:
            return None
        out = self.model(input_ids=self.torch.tensor([first[:n]], device=self.device), use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        return first[:n], cache

    def _last_logprobs(self, enc: Any, prefix: tuple[list[int], Any] | None = None) -> Any:
        """fp32 next-token log-probabilities at the last position. In bf16/fp16 the head's logits are
        quantised (steps of 0.06 at magnitude 16), which ties the label probabilities of different
        documents; so the final hidden state goes through the output head in fp32 (one row per document).

        With a ``prefix`` (its ids and KV cache), ``enc`` holds only the rest of each prompt: the left
        padding then sits between the prefix and each row's tokens, masked, and positions continue the prefix.
        """
        kw: dict[str, Any] = {}
        if prefix is not None:
            mask = enc["attention_mask"]
            cache, full_mask = self._prefix_rows(prefix, mask)
            kw.update({self._cache_kw: cache}, attention_mask=full_mask,
                      position_ids=(enc["position_ids"] + len(prefix[0])) * mask + (1 - mask))
            enc = {"input_ids": enc["input_ids"]}
        return self._head_logprobs(enc, use_cache=prefix is not None, **kw)

    def _prefix_rows(self, prefix: tuple[list[int], Any], mask: Any) -> tuple[Any, Any]:
        """For a batch of prompt rests (``mask``: their left-padded attention mask) after a shared ``prefix``:
        a copy of the prefix's KV cache with one row per prompt (each batch extends its own copy) and the
        attention mask over prefix + padding + rest."""
        ids, cache = prefix
        rows = mask.shape[0]
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(rows)
        return cache, self.torch.cat([mask.new_ones(rows, len(ids)), mask], dim=1)

    def _head_logprobs(self, enc: dict[str, Any], **kw: Any) -> Any:
        """fp32 log-probabilities at the last position of ``self.model(**enc, **kw)`` (see :meth:`_last_logprobs`)."""
        return self.torch.log_softmax(self._tail_logits(enc, 1, **kw)[:, -1, :], dim=-1)

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        torch, tf = self.torch, self.transformers
        flat = self.label_candidates(spec)
        index = torch.tensor([tid for _, tid in flat], device=self.device)
        label_ids = {tid for _, tid in flat}
        seqs = self.generation_inputs(prompts, max_new_tokens)
        out: list[Generation | None] = [None] * len(seqs)
        batches = length_sorted_batches([len(s) + max_new_tokens for s in seqs], self.generation_batch_size,
                                        self.max_batch_tokens)
        gen_cfg = self.model.generation_config.to_dict() if self.model.generation_config else {}
        kwargs: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
                                  "max_new_tokens": max_new_tokens, "pad_token_id": self.pad_id,
                                  "eos_token_id": sorted(self.eos_ids) or None, "return_dict_in_generate": True}
        kwargs.update(self.generation_kwargs)
        if "repetition_penalty" not in self.generation_kwargs and gen_cfg.get("repetition_penalty", 1.0) != 1.0:
            kwargs["repetition_penalty"] = 1.0  # keep label probabilities unbiased
        with torch.inference_mode(), self._progress(len(batches), "generating") as bar:
            prefix = self._shared_prefix(seqs)
            for batch in batches:
                enc = self._generation_batch([seqs[i] for i in batch], prefix)
                width = enc["input_ids"].shape[1]
                rec, stop = generation_hooks(tf, torch, self.tokenizer, index, verdict_finder(spec))
                res = self.model.generate(**enc, logits_processor=tf.LogitsProcessorList([rec]),
                                          stopping_criteria=tf.StoppingCriteriaList([stop]), **kwargs)
                seq = getattr(res, "sequences", res)
                steps = torch.stack(rec.steps, dim=1).cpu().tolist() if rec.steps else [[] for _ in batch]
                ids = [until_stop(seq[row, width:].tolist(), self.end_ids) for row in range(len(batch))]
                gens = [self._finish(ids[row], steps[row], flat, label_ids, locate) for row in range(len(batch))]
                todo = [row for row, g in enumerate(gens) if locate(g.text) is None]
                if todo and seq.shape[0] == len(batch):
                    forced = self._forced_logprobs(
                        output_cache(res), enc["attention_mask"], seq.shape[1] - width,
                        [(row, prompts[batch[row]], seqs[batch[row]], ids[row], gens[row].text) for row in todo],
                        spec, index, flat)
                    for row, lp in forced.items():
                        gens[row] = dataclasses.replace(gens[row], forced_logprobs=lp)
                del res, seq  # the KV cache goes before the next batch's generation
                for row, i in enumerate(batch):
                    out[i] = gens[row]
                bar.update(1)
        return [g for g in out if g is not None]

    def _generation_batch(self, seqs: list[list[int]], prefix: tuple[list[int], Any] | None) -> dict[str, Any]:
        """``generate`` inputs for ``seqs``: left-padded ids and mask; with a shared ``prefix`` (ids and KV
        cache), the rows are prefix + padding + the rest of each prompt, the mask zero on the padding, and a
        copy of the prefix's cache (one row per prompt) goes along, so ``generate`` feeds only what follows
        it; the positions it derives from the mask (its cumulative sum) continue the prefix, as in
        :meth:`_last_logprobs`."""
        torch = self.torch
        if prefix is None:
            enc = self._batch_tensors(seqs)
            enc.pop("position_ids")  # generate derives them from the mask, step by step
            return enc
        ids = prefix[0]
        enc = self._batch_tensors([s[len(ids):] for s in seqs])
        cache, mask = self._prefix_rows(prefix, enc["attention_mask"])
        head = torch.tensor([ids], device=self.device).expand(len(seqs), len(ids))
        return {"input_ids": torch.cat([head, enc["input_ids"]], dim=1), self._cache_kw: cache,
                "attention_mask": mask}

    def _forced_logprobs(self, cache: Any, prompt_mask: Any, new_tokens: int,
                         rows: list[tuple[int, Prompt, list[int], list[int], str]], spec: LabelSpec, index: Any,
                         flat: list[tuple[int, int]]) -> dict[int, dict[int, float]]:
        """The forced verdicts of generations without one, read by continuing the generation's KV cache.

        ``cache`` holds the left-padded prompts (``prompt_mask``) and the first ``new_tokens - 1`` generated
        steps (the last token was never fed). Each row of ``rows`` (batch row, prompt, prompt ids, generated ids,
        text) gets the exact tokens of the re-prefill path (:meth:`label_logprobs` of the prompt whose assistant
        prefix is the output without trailing whitespace + ``"\\n" + marker``): the cached generated tokens it
        repeats are kept, the others masked, and the rest is fed in one pass (:func:`continuation_chunk`), with
        positions continuing each row's own count. Returns ``{batch row: {label: logprob}}``; rows it cannot
        continue exactly (a cache of another kind, an assistant prefix the head changes, a head over the
        context) are left out, and the reranker forces those in a second pass.
        """
        torch = self.torch
        rows_n, width = prompt_mask.shape
        if new_tokens < 1 or not continuable(cache, rows_n, width + new_tokens - 1):
            return {}
        plans: list[tuple[int, int, list[int]]] = []
        for row, prompt, prompt_ids, gen_ids, text in rows:
            head = Prompt(prompt.messages, (prompt.assistant_prefix + text).rstrip() + "\n" + spec.marker)
            try:
                target = self.label_inputs([head], spec)[0][0]
            except ValueError:  # over the context: the second pass reports it
                continue
            cut = continuation_chunk(prompt_ids, gen_ids, target, new_tokens - 1)
            if cut is not None:
                plans.append((row, *cut))
        if not plans:
            return {}
        sel = torch.tensor([row for row, _, _ in plans], device=self.device)
        cache.batch_select_indices(sel)
        enc = self._batch_tensors([chunk for _, _, chunk in plans])
        kept = torch.tensor([[k] for _, k, _ in plans], device=self.device)
        mask, before = enc["attention_mask"], prompt_mask.index_select(0, sel)
        gen_mask = (torch.arange(new_tokens - 1, device=self.device) < kept).to(mask.dtype)
        try:
            lp = self._head_logprobs({"input_ids": enc["input_ids"]}, use_cache=True, **{self._cache_kw: cache},
                                     attention_mask=torch.cat([before, gen_mask, mask], dim=1),
                                     position_ids=(enc["position_ids"] + before.sum(-1, keepdim=True) + kept) * mask
                                     + (1 - mask))
        except (RuntimeError, TypeError, ValueError) as exc:  # a model whose forward takes no continued cache
            logger.warning("forced verdicts use a second pass: continuing the generation's cache failed (%s)", exc)
            return {}
        values = lp.index_select(-1, index).cpu().tolist()
        return {row: per_label_logprobs(flat, v) for (row, _, _), v in zip(plans, values)}

    def _finish(self, ids: list[int], steps: list[list[float]], flat: list[tuple[int, int]], label_ids: set[int],
                locate: LocateLabel) -> Generation:
        """The generation of ``ids``; ``steps[k]`` holds the candidates' log-probabilities (``flat`` order,
        token ids ``label_ids``) at generated token ``k``."""
        return finish_generation(self.tokenizer, ids, locate, label_ids, steps,
                                 functools.partial(per_label_logprobs, flat))
