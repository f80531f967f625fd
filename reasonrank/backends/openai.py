"""OpenAI-compatible HTTP backend: score with any server that returns token log-probabilities.

Works with vLLM (``vllm serve`` / ``python -m vllm.entrypoints.openai.api_server``), llama.cpp's Python
server (``python -m llama_cpp.server``), SGLang and hosted endpoints. One HTTP request per document,
at most ``max_concurrency`` in flight; the server batches them.

Two request shapes:

* **With a local tokenizer** (``tokenizer=...``, recommended): the prompt is rendered client-side with
  the model's chat template, exactly as the transformers backend renders it (shared
  :func:`reasonrank.backends.tokenization.render_prompt`), and sent to ``/v1/completions`` with ``logprobs=k``.
  Direct mode reads the top-k log-probabilities of the one token after the label marker; reasoning
  mode generates with per-token top-k log-probabilities and reads them at the verdict's label token.
  Any server with legacy completions + logprobs works (vLLM, llama.cpp, SGLang).
* **Without a tokenizer**: ``/v1/chat/completions`` with ``logprobs=true, top_logprobs=k``. The
  assistant prefix (``Explanation:`` / ``Relevance:``) is sent as a final assistant message continued
  by the server (``continue_final_message=true, add_generation_prompt=false``: vLLM and SGLang). Servers
  without assistant prefill (llama.cpp's Python server, most hosted APIs) need ``chat_prefill=False``:
  reasoning mode then lets the model write freely; direct mode needs a tokenizer. Truncation is
  approximate (``chars_per_token`` characters per token) without a tokenizer.

The HTTP side (retries, backoff, deadlines, one client per event loop, the private event-loop thread of
the synchronous methods) is :class:`reasonrank.backends.http_transport.HttpTransport`.

Labels are matched by token text: every top-k token whose stripped text is the label's digit counts
(log-sum-exp over variants such as ``"2"`` and ``" 2"``). Labels outside the server's top-k are left out
(probability 0 after normalisation); vLLM caps k with ``--max-logprobs`` (default 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._deps import require
from ..models import resolve_model
from .base import Backend, Generation, LabelReply, LabelScores, LabelSpec, LocateLabel, Prompt
from .http_transport import (
    RETRY_STATUS,  # noqa: F401  (re-exported: it was defined here)
    HttpTransport,
    RequestError,
    ServerResponseError,
    ServerUnavailableError,
    backoff_delay,
    redact_url,
)
from .tokenization import label_tokens, logsumexp, render_prompt, truncate_text, verdict_finder

__all__ = ["OpenAIBackend", "ServerUnavailableError", "ServerResponseError", "LogprobsUnsupportedError",
           "normalize_base_url", "labels_from_top_logprobs", "backoff_delay"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_START_HINT = ("start one, e.g. `vllm serve MODEL --port 8000` or "
               "`python -m llama_cpp.server --model MODEL.gguf --logits_all true --port 8000`, "
               "and pass base_url='http://127.0.0.1:8000/v1' (or set REASONRANK_OPENAI_BASE_URL)")


class LogprobsUnsupportedError(RuntimeError):
    """The server returned completions without the log-probabilities scoring needs."""


# ---------------------------------------------------------------------------------------------- pure helpers
def normalize_base_url(url: str) -> str:
    """Strip trailing slashes; a bare host gets ``/v1``.

    Example:
        >>> normalize_base_url("http://127.0.0.1:8000")
        'http://127.0.0.1:8000/v1'
        >>> normalize_base_url("https://api.example.com/openai/v1/")
        'https://api.example.com/openai/v1'
    """
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url.strip()):
        shown = redact_url(url) if isinstance(url, str) else url
        raise ValueError(f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000/v1', got {shown!r}")
    url = url.strip().rstrip("/")
    return url + "/v1" if re.fullmatch(r"https?://[^/]+", url) else url


def labels_from_top_logprobs(top: Mapping[str, float] | Sequence[Mapping[str, Any]] | None,
                             labels: Sequence[int]) -> dict[int, float]:
    """Per-label log-probability from one position's top-k: tokens whose stripped text is the label digit.

    Accepts the completions shape (``{token: logprob}``) and the chat shape (``[{"token", "logprob"}]``).

    Example:
        >>> import math
        >>> r = labels_from_top_logprobs({"2": math.log(0.5), " 2": math.log(0.25), "x": -1.0}, (0, 1, 2))
        >>> {k: round(math.exp(v), 2) for k, v in r.items()}
        {2: 0.75}
    """
    pairs: list[tuple[str, float]] = []
    if isinstance(top, Mapping):
        pairs = [(str(k), float(v)) for k, v in top.items() if v is not None]
    elif top:
        pairs = [(str(e.get("token", "")), float(e["logprob"])) for e in top if e.get("logprob") is not None]
    found: dict[int, list[float]] = {}
    wanted = {str(lab): lab for lab in labels}
    for tok, lp in pairs:
        lab = wanted.get(tok.strip())
        if lab is not None:
            found.setdefault(lab, []).append(lp)
    return {lab: logsumexp(v) for lab, v in found.items()}


def _verdict_cut(tokens: Sequence[str], labels: Sequence[int], marker: str) -> int:
    """Number of tokens up to and including the first verdict's label token (all tokens when none).

    Mirrors the transformers backend, which stops generating once the verdict's label is written.
    """
    verdict = verdict_finder(LabelSpec(labels=tuple(labels), marker=marker))
    digits = {str(lab) for lab in labels}
    for k, tok in enumerate(tokens):
        window = "".join(tokens[max(0, k - 11): k + 1]).rstrip()
        if tok.strip() in digits and any(v.end == len(window) for v in verdict(window)):
            return k + 1
    return len(tokens)


def _token_starts(tokens: Sequence[str]) -> list[int]:
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t)
    return starts


def _read_logprobs(data: Mapping[str, Any], chat: bool) -> tuple[str, list[str], list[Any], int | None]:
    """(text, token strings, per-token top-k, completion tokens) from a completion response."""
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise RequestError(f"malformed response without choices: {str(data)[:300]}") from None
    usage = (data.get("usage") or {}).get("completion_tokens")
    lp = choice.get("logprobs")
    if chat:
        text = (choice.get("message") or {}).get("content") or ""
        content = lp.get("content") if isinstance(lp, Mapping) else None
        if content is None or (not content and text):
            raise LogprobsUnsupportedError("no logprobs")
        tokens = []
        for e in content:
            raw = e.get("bytes")
            tokens.append(bytes(raw).decode("utf-8", errors="replace") if raw and "\ufffd" in e["token"]
                          else e["token"])
        return text, tokens, [e.get("top_logprobs") or [] for e in content], usage
    text = choice.get("text") or ""
    if not isinstance(lp, Mapping) or lp.get("top_logprobs") is None or (not lp.get("tokens") and text):
        raise LogprobsUnsupportedError("no logprobs")
    tops = [t or {} for t in lp["top_logprobs"]]
    tokens = list(lp["tokens"])
    if len(tops) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(tops)} top_logprobs entries")
    return text, tokens, tops, usage


# ---------------------------------------------------------------------------------------------- backend
class OpenAIBackend(Backend):
    """Rerank through an OpenAI-compatible server.

    Args:
        model: The served model name (vLLM: ``--served-model-name`` or the model path; llama.cpp's server
            accepts any name).
        base_url: Server URL, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added to a bare host). Default:
            ``$REASONRANK_OPENAI_BASE_URL``, then ``$OPENAI_BASE_URL``.
        api_key: Bearer token; default ``$OPENAI_API_KEY`` (optional for local servers).
        tokenizer: The served model's tokenizer: a local directory, hub id (offline cache), ``.gguf`` file,
            ``"smollm2-local"``, or a loaded Hugging Face tokenizer. Enables client-side chat-template
            rendering (``/v1/completions``) and exact token truncation; needs ``reasonrank[transformers]``.
            Without it the chat endpoint is used and truncation counts ``chars_per_token`` characters/token.
        max_concurrency: Requests in flight at once (per event loop).
        timeout: Seconds per request (connect, read, write).
        max_retries: Retries on connection errors, 429 and 5xx (exponential backoff with jitter; a
            ``Retry-After`` header is honoured up to ``max_backoff``). 4xx other than 429 are not retried.
        backoff: Base delay of the backoff in seconds.
        max_backoff: Cap on one delay in seconds.
        top_logprobs: Top-k log-probabilities requested per token (vLLM's default cap is 20).
        on_error: ``"raise"``: any failed request raises. ``"report"``: a document whose request fails (HTTP
            error after retries, timeout, no label in the top-k) is returned with ``error`` set and score 0,
            ranked last; an unreachable server or one without logprobs still raises.
        chat_prefill: Without a tokenizer, send the assistant prefix as a continued assistant message
            (``continue_final_message``; vLLM/SGLang). False for servers that lack prefill.
        chars_per_token: Truncation ratio used without a tokenizer.
        extra_body: Extra JSON fields for every request, e.g. ``{"repeat_penalty": 1.0}`` for llama.cpp
            (its default 1.1 changes greedy text) or ``{"repetition_penalty": 1.0}`` for vLLM.
        http_client_kwargs: Extra ``httpx.AsyncClient`` options (headers, verify, event_hooks, ...).
        batch_size: Accepted for interface parity; the server batches concurrent requests itself.

    Example:
        >>> from reasonrank import ReasoningReranker
        >>> rr = ReasoningReranker("smollm2", backend="openai", base_url="http://127.0.0.1:8000/v1",
        ...                        tokenizer="smollm2-local", mode="direct")  # doctest: +SKIP
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 tokenizer: Any = None, max_concurrency: int = 8, timeout: float = 120.0, max_retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 30.0, top_logprobs: int = 20,
                 on_error: Literal["raise", "report"] = "raise", chat_prefill: bool = True,
                 chars_per_token: float = 4.0, extra_body: Mapping[str, Any] | None = None,
                 http_client_kwargs: Mapping[str, Any] | None = None, batch_size: int = 8) -> None:
        self.httpx = require("httpx", "openai", purpose="the openai backend")
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be the served model name (a non-empty string)")
        url = base_url or os.environ.get("REASONRANK_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError("the openai backend needs the server URL: pass base_url='http://127.0.0.1:8000/v1' "
                             "or set REASONRANK_OPENAI_BASE_URL; to run a server, " + _START_HINT.split(", and")[0])
        for name, val, lo in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0),
                              ("top_logprobs", top_logprobs, 1), ("batch_size", batch_size, 1)):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {val!r}")
        for name, fval in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff),
                           ("chars_per_token", chars_per_token)):
            if not isinstance(fval, (int, float)) or fval <= 0:
                raise ValueError(f"{name} must be a positive number, got {fval!r}")
        if on_error not in ("raise", "report"):
            raise ValueError(f"on_error must be 'raise' or 'report', got {on_error!r}")
        self.model_name = model
        self.base_url = normalize_base_url(url)
        self.display_url = redact_url(self.base_url)  # what messages, logs and repr show (no password)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, float(timeout), max_retries
        self.backoff, self.max_backoff, self.top_logprobs = float(backoff), float(max_backoff), top_logprobs
        self.on_error, self.chat_prefill, self.chars_per_token = on_error, chat_prefill, float(chars_per_token)
        self.extra_body = dict(extra_body or {})
        self.http_client_kwargs = dict(http_client_kwargs or {})
        self.batch_size = batch_size
        self.tokenizer = self._load_tokenizer(tokenizer) if tokenizer is not None else None
        if self.tokenizer is None:
            logger.info("openai backend without a tokenizer: using /chat/completions, truncation ~%.1f chars/token",
                        self.chars_per_token)
        self._strip_bos = self._server_adds_bos()
        self._label_cache: dict[LabelSpec, str] = {}
        self.transport = HttpTransport(self.httpx, self.base_url, api_key=self.api_key,
                                       max_concurrency=max_concurrency, timeout=self.timeout,
                                       max_retries=max_retries, backoff=self.backoff, max_backoff=self.max_backoff,
                                       client_kwargs=self.http_client_kwargs, unavailable_hint=_START_HINT,
                                       thread_name="reasonrank-openai")

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _load_tokenizer(tokenizer: Any) -> Any:
        if not isinstance(tokenizer, (str, Path)):
            if not hasattr(tokenizer, "apply_chat_template"):
                raise TypeError("tokenizer must be a path, hub id, .gguf file, alias or a Hugging Face tokenizer")
            return tokenizer
        tf = require("transformers", "transformers", purpose="client-side prompt rendering (tokenizer=...)")
        path = resolve_model(str(tokenizer))
        if path.endswith(".gguf"):
            require("gguf", "transformers", purpose="reading a tokenizer from a .gguf file")
            p = Path(path)
            return tf.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        return tf.AutoTokenizer.from_pretrained(path)

    def _server_adds_bos(self) -> bool:
        """True when the tokenizer prepends BOS itself: then the server does too, so the rendered BOS is cut."""
        tok = self.tokenizer
        if tok is None or not tok.bos_token or tok.bos_token_id is None:
            return False
        return tok("a", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]

    def describe(self) -> str:
        how = "completions" if self.tokenizer is not None else "chat"
        return f"openai:{self.model_name} at {self.display_url} ({how}, concurrency {self.max_concurrency})"

    # ------------------------------------------------------------------ text
    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        limit = int(max_tokens * self.chars_per_token)
        if self.tokenizer is None:
            return (text[:limit], True) if len(text) > limit else (text, False)
        return truncate_text(self.tokenizer, text, max_tokens)

    def render(self, prompt: Prompt) -> str:
        """The prompt text sent to ``/v1/completions`` (the transformers backend's rendering)."""
        if self.tokenizer is None:
            raise RuntimeError("render needs a tokenizer; pass tokenizer=... to the openai backend")
        text = render_prompt(self.tokenizer, prompt)
        if self._strip_bos and text.startswith(self.tokenizer.bos_token):
            text = text[len(self.tokenizer.bos_token):]
        return text

    def _spacer(self, spec: LabelSpec) -> str:
        """The text between the marker and the label token (completions path: a local tokenizer is set)."""
        assert self.tokenizer is not None
        if spec not in self._label_cache:
            spacer, _ = label_tokens(self.tokenizer, spec)
            self._label_cache[spec] = self.tokenizer.decode(spacer) if spacer else ""
        return self._label_cache[spec]

    # ------------------------------------------------------------------ requests (pure building)
    def _request(self, prompt: Prompt, spec: LabelSpec, *, direct: bool, max_tokens: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model_name, "max_tokens": max_tokens, "temperature": 0.0,
                                "top_p": 1.0}
        if self.tokenizer is not None:
            text = self.render(prompt)
            if direct:
                text = text.rstrip(" ") + self._spacer(spec)
            body.update(prompt=text, logprobs=self.top_logprobs)
            path = "/completions"
        else:
            msgs = [dict(m) for m in prompt.messages]
            if prompt.assistant_prefix and self.chat_prefill:
                msgs.append({"role": "assistant", "content": prompt.assistant_prefix})
                body.update(continue_final_message=True, add_generation_prompt=False)
            elif direct:
                why = ("direct mode needs" if prompt.assistant_prefix.strip() == spec.marker.strip() else
                       "the output had no verdict; scoring it from label probabilities needs")
                msg = (f"{why} the label marker prefilled: pass tokenizer=... (client-side rendering), or "
                       "chat_prefill=True with a server that continues a final assistant message (vLLM, SGLang)")
                if why.startswith("direct"):
                    raise ValueError(msg)
                raise RequestError(msg)
            body.update(messages=msgs, logprobs=True, top_logprobs=self.top_logprobs)
            path = "/chat/completions"
        body.update(self.extra_body)
        return path, body

    def _no_logprobs(self, path: str) -> LogprobsUnsupportedError:
        return LogprobsUnsupportedError(
            f"the server at {self.display_url} returned {path} without token log-probabilities; reasonrank scores "
            "from logprobs, so the server must support them: vLLM (default --max-logprobs 20; raise it if you "
            "set top_logprobs higher), llama.cpp `python -m llama_cpp.server --logits_all true`, SGLang "
            "(default). Hosted APIs without logprobs cannot be used.")

    # ------------------------------------------------------------------ one document
    async def _one_label(self, prompt: Prompt, spec: LabelSpec, *, spaced: bool = False) -> dict[int, float]:
        chat = self.tokenizer is None
        # without a tokenizer the spacer between marker and label is unknown: read up to 3 tokens, skipping
        # whitespace; if the model wants no space and no label, ask again with the space prefilled
        path, body = self._request(prompt, spec, direct=True, max_tokens=3 if chat and not spaced else 1)
        data = await self.transport.post(path, body)
        with self._reading(path):
            return await self._labels_of(data, prompt, spec, chat=chat, spaced=spaced)

    @contextlib.contextmanager
    def _reading(self, path: str) -> Iterator[None]:
        """Reading a reply: one of the wrong shape (empty ``top_logprobs``, a string log-probability, no
        ``choices``, ...) fails its document with the URL (a per-document error under ``on_error="report"``)."""
        try:
            yield
        except LogprobsUnsupportedError:
            raise self._no_logprobs(path) from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise RequestError(f"{self.display_url}{path} returned a malformed reply ({type(exc).__name__}: "
                               f"{exc})") from exc

    async def _labels_of(self, data: Mapping[str, Any], prompt: Prompt, spec: LabelSpec, *, chat: bool,
                         spaced: bool) -> dict[int, float]:
        _, tokens, tops, _ = _read_logprobs(data, chat)
        if not tokens:
            raise RequestError("the server generated no token after the label marker")
        k = 0
        while chat and k < len(tokens) - 1 and not tokens[k].strip():
            k += 1  # skip a whitespace token the model writes between marker and label
        out = labels_from_top_logprobs(tops[k], spec.labels)
        if not out and chat and not spaced:
            spaced_prompt = Prompt(messages=prompt.messages, assistant_prefix=prompt.assistant_prefix.rstrip() + " ")
            return await self._one_label(spaced_prompt, spec, spaced=True)
        if not out:
            seen = [e.get("token") for e in tops[k]] if isinstance(tops[k], list) else list(tops[k])
            raise RequestError(f"none of the labels {spec.labels} is among the server's top-{self.top_logprobs} "
                               f"next tokens (got {seen[:8]}); raise top_logprobs or check the template")
        return out

    async def _one_generate(self, prompt: Prompt, spec: LabelSpec, locate: LocateLabel,
                            max_new_tokens: int) -> Generation:
        chat = self.tokenizer is None
        path, body = self._request(prompt, spec, direct=False, max_tokens=max_new_tokens)
        data = await self.transport.post(path, body)
        with self._reading(path):
            return self._generation_of(data, spec, locate, chat=chat)

    def _generation_of(self, data: Mapping[str, Any], spec: LabelSpec, locate: LocateLabel, *,
                       chat: bool) -> Generation:
        text, tokens, tops, usage = _read_logprobs(data, chat)
        n = _verdict_cut(tokens, spec.labels, spec.marker)
        tokens, tops = tokens[:n], tops[:n]
        joined = "".join(tokens)
        if joined != text[: len(joined)]:
            logger.debug("token strings do not rebuild the text; using the token strings")
        text = joined
        num = len(tokens) if usage is None else int(usage)
        pos = locate(text)
        if pos is None:
            return Generation(text=text, label_logprobs=None, num_tokens=num)
        starts = _token_starts(tokens)
        k = next((i for i in range(len(tokens)) if starts[i] + len(tokens[i]) > pos), None)
        if k is None or tokens[k].strip() != text[pos]:
            return Generation(text=text, label_logprobs=None, num_tokens=num)
        lps = labels_from_top_logprobs(tops[k], spec.labels)
        return Generation(text=text, label_logprobs=lps or None, num_tokens=num)

    # ------------------------------------------------------------------ fan-out
    async def _guard(self, coro: Awaitable[T], fail: Any) -> T:
        try:
            return await coro
        except (RequestError, ServerResponseError) as exc:
            if self.display_url not in str(exc):
                exc = RequestError(f"{self.display_url}: {exc}")
            if self.on_error == "raise":
                if isinstance(exc, RequestError):
                    raise RuntimeError(f"{exc} (pass on_error='report' to get per-document errors instead)") from exc
                raise
            logger.warning("document failed: %s", exc)
            return fail(str(exc))

    async def _fan_out(self, coros: list[Awaitable[T]]) -> list[T]:
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def alabel_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[LabelReply]:
        return await self._fan_out([self._guard(self._one_label(p, spec), LabelScores.failed) for p in prompts])

    async def agenerate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                        max_new_tokens: int) -> list[Generation]:
        def fail(err: str) -> Generation:
            return Generation(text="", label_logprobs=None, num_tokens=0, error=err)

        return await self._fan_out([self._guard(self._one_generate(p, spec, locate, max_new_tokens), fail)
                                    for p in prompts])

    # ------------------------------------------------------------------ sync = async on the transport's loop
    def _run(self, coro: Awaitable[T]) -> T:
        return self.transport.run(coro)

    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[LabelReply]:
        return self._run(self.alabel_logprobs(prompts, spec))

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        return self._run(self.agenerate(prompts, spec, locate=locate, max_new_tokens=max_new_tokens))

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (the sync loop is closed by :meth:`close`)."""
        await self.transport.aclose()

    def close(self) -> None:
        """Close the private event loop and its HTTP client."""
        self.transport.close()
