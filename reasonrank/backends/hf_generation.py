"""The transformers backend's generation helpers: the per-step hooks of ``generate`` (label log-probabilities,
the verdict stop) and the checks that let the forced-verdict pass continue the generation's KV cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..parsing import Verdict
from .tokenization import verdict_reached

__all__ = ["continuable", "generation_hooks", "output_cache"]


def generation_hooks(tf: Any, torch: Any, tok: Any, index: Any,
                     verdict: Callable[[str], list[Verdict]]) -> tuple[Any, Any]:
    """(recorder, stop) for one ``generate`` call; per step, both cost the same whatever the generated length.

    The recorder (a logits processor) keeps the log-probabilities of the label candidates ``index``: their
    columns minus the logsumexp, never a vocabulary-sized log-softmax. The stopping criterion ends a row once
    its verdict's label is written: a tensor test finds the rows whose last token is a label candidate, and
    only those decode their last 12 ids (all :func:`verdict_reached` reads; they may reach into the prompt,
    whose assistant prefix can end with the marker).
    """
    label_ids = set(index.tolist())

    class Recorder(tf.LogitsProcessor):  # type: ignore[misc]  # tf is a lazily imported module
        def __init__(self) -> None:
            self.steps: list[Any] = []

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            x = scores.float()
            self.steps.append(x.index_select(-1, index) - torch.logsumexp(x, dim=-1, keepdim=True))
            return scores

    class VerdictStop(tf.StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [False] * input_ids.shape[0]
            for r in torch.isin(input_ids[:, -1], index).nonzero().flatten().tolist():
                done[r] = verdict_reached(tok, input_ids[r, -12:].tolist(), label_ids, verdict)
            return torch.tensor(done, device=input_ids.device)

    return Recorder(), VerdictStop()


def output_cache(res: Any) -> Any:
    """The KV cache a ``generate(..., return_dict_in_generate=True)`` output holds (``cache`` in transformers
    >= 5.2x, ``past_key_values`` before), or None."""
    for name in ("cache", "past_key_values"):
        cache = getattr(res, name, None)
        if cache is not None:
            return cache
    return None


def continuable(cache: Any, rows: int, length: int) -> bool:
    """True when ``cache`` is a plain :class:`DynamicCache` of ``rows`` rows holding ``length`` positions in
    every layer (no sliding window, quantisation, shared or linear-attention layers): a cache a forward pass
    can continue with a padding mask. Anything else (other caches, older transformers) gets False."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:
        return False
    layers: list[Any] = list(getattr(cache, "layers", None) or [])
    return type(cache) is DynamicCache and bool(layers) and all(
        type(layer) is DynamicLayer and layer.get_seq_length() == length and layer.keys is not None
        and layer.keys.shape[0] == rows
        for layer in layers)
