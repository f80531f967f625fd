"""Regional ``torch.compile`` for the transformers backend (``compile=True``).

A decoder layer's matmuls already run at the CPU's matmul peak; what eager mode adds is its elementwise work
(RMSNorm's power, mean and two products; the MLP's SiLU and gate product), one memory pass per operation:
about a tenth of a direct-scoring forward on SmolLM2-135M. Compiling the model whole fused it all (+16%) but
took 242 s on 2 CPU cores; compiling only the repeated blocks that hold no cache state (every ``*MLP`` and
``*RMSNorm`` module: one graph, shared by every layer) takes ~9 s and gave +13% with 128-token documents, +5%
with 256 (docs/benchmarks.md, "Compiled blocks"). Attention stays eager: its KV-cache update keys on the
layer index, which would compile once per layer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMPILED_BLOCKS", "compile_blocks", "warm_up_compiled"]

#: Class-name endings of the modules compiled (Llama, Qwen2/3, Mistral, Gemma, Phi-3 and most decoders).
COMPILED_BLOCKS = ("MLP", "RMSNorm")


def compile_blocks(model: Any) -> int:
    """Compile, in place, every module of ``model`` whose class name ends with one of :data:`COMPILED_BLOCKS`
    (``module.compile(dynamic=True)``: one graph for every batch shape); return how many.

    Raises:
        ValueError: the model has no such module (an architecture this does not know), naming the fix.
    """
    blocks = [m for m in model.modules() if type(m).__name__.endswith(COMPILED_BLOCKS)]
    if not blocks:
        raise ValueError(f"compile=True found no module named *{' or *'.join(COMPILED_BLOCKS)} in "
                         f"{type(model).__name__}; pass compile=False, or torch.compile the model yourself")
    for module in blocks:
        module.compile(dynamic=True)
    return len(blocks)


def warm_up_compiled(torch: Any, model: Any, pad_id: int, device: str) -> None:
    """Run the compiled blocks on dummy batches, as scoring does (``inference_mode``), so the compile happens
    now rather than inside the first request, and a compiler that cannot run fails here. The shapes: one row
    (a shared prefix) and several, many positions (prefill) and one (a decoding step); dynamic shapes still
    specialise sizes 0 and 1.

    Raises:
        RuntimeError: ``torch.compile`` failed (on a CPU it needs a C++ compiler), naming the fix.
    """
    try:
        with torch.inference_mode():
            for shape in ((1, 5), (2, 5), (2, 1)):
                ids = torch.full(shape, pad_id, dtype=torch.long, device=device)
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except Exception as exc:  # inductor raises its own types; the cause is kept as __cause__
        raise RuntimeError(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:300]}); pass compile=False "
                           "(on a CPU torch.compile needs a working C++ compiler, e.g. gcc)") from exc
