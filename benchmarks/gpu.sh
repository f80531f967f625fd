#!/usr/bin/env bash
# The GPU checks, in one go (docs/benchmarks.md "GPU"; docs/training.md "The GPU recipe"):
#   1. throughput of a random-initialised Qwen2.5-3B (the architecture, no weights) on the transformers
#      backend, top-100 candidates, direct (128 / 512-token documents) and reasoning / explain3 (128 tokens,
#      64 new tokens), with and without the shared-prefix KV reuse;
#   2. a dry run of training/configs/reasonrank-3b.yaml, every training stage for a few steps (SFT, GRPO,
#      score learning with a dev evaluation, export) on a random-initialised Qwen2.5-3B with the real
#      Qwen2.5 tokenizer, to check the GPU path end to end and time its steps (no 3B weights exist offline).
#
#   bash benchmarks/gpu.sh OUT_DIR
#
# Needs: a CUDA GPU; torch, transformers, peft, trl, datasets, ir_measures (pip install -e ".[train,bench]");
# the offline data (data/built/train.jsonl, data/built/python-faq-dev) and a Qwen2.5 tokenizer folder in
# $RR_QWEN_TOKENIZER (default: the 0.5B student's, ~/.cache/reasonrank/gguf/qwen2.5-coder-0.5b-*).
# A quick check of the script itself on a CPU: RR_GPU_DEVICE=cpu RR_GPU_PARTS=recipe RR_GPU_STEPS=2
# RR_GPU_ARCH_JSON='{"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}'.
set -u
out=${1:-runs/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
arch=${RR_GPU_ARCH:-qwen2.5-3b}
steps=${RR_GPU_STEPS:-8}
archjson=${RR_GPU_ARCH_JSON:-'{}'}
device=${RR_GPU_DEVICE:-cuda}
tok=${RR_QWEN_TOKENIZER:-$(ls -d ~/.cache/reasonrank/gguf/qwen2.5-coder-0.5b-* 2>/dev/null | head -1)}
train=${RR_TRAIN_FILE:-data/built/train.jsonl}
dev=${RR_DEV_FOLD:-data/built/python-faq-dev}
work=${RR_GPU_WORK:-/tmp/rr-gpu}
parts=${RR_GPU_PARTS:-direct,reasoning,recipe}
export PYTHONPATH=$PWD:$PWD/training${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# offline: transformers >= 5.2x loads hub kernels by default when `kernels` is installed, which needs the hub
export HF_HUB_OFFLINE=1 USE_HUB_KERNELS=${USE_HUB_KERNELS:-NO}
has() { [[ ",$parts," == *",$1,"* ]]; }
rc=0
step() { echo; echo "== $1 ($(date -u +%T))"; }

step "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $py -c "import torch, transformers, peft, trl; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"; } | tee "$out/machine.txt"

if has direct; then
  step "throughput: direct, random $arch, 100 candidates"
  $py benchmarks/throughput.py --random-arch "$arch" --device "$device" --modes direct --candidates 100 \
      --doc-tokens 128,512 --batch-size 32 --variant default=transformers \
      --variant whole=transformers:reuse_prefix=false --variant b64=transformers:batch_size=64 \
      --json "$out/direct.json" 2>&1 | tee "$out/direct.log" || rc=1
fi
if has reasoning; then
  step "throughput: reasoning and explain3, random $arch, 100 candidates, 64 new tokens"
  $py benchmarks/throughput.py --random-arch "$arch" --device "$device" --modes reasoning,explain3 \
      --candidates 100 --doc-tokens 128 --batch-size 32 --max-new-tokens 64 --variant default=transformers \
      --variant whole=transformers:reuse_prefix=false --variant reuse=transformers:reuse_prefix=true \
      --json "$out/reasoning.json" 2>&1 | tee "$out/reasoning.log" || rc=1
fi

has recipe || exit $rc
step "recipe dry run: random $arch with the Qwen2.5 tokenizer of $tok"
mkdir -p "$work"
$py - "$arch" "$tok" "$work/base" "$device" "$archjson" <<'EOF' || exit 1
import json, sys, time
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, "benchmarks")
from throughput import ARCHS
arch, tok, dest, device, overrides = sys.argv[1:]
spec = {**ARCHS[arch], **json.loads(overrides)}
t0 = time.perf_counter()
with torch.device(device):
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(spec.pop("model_type"), **spec), dtype=torch.bfloat16)
lm.save_pretrained(dest)
AutoTokenizer.from_pretrained(tok).save_pretrained(dest)
print(f"random {arch}: {sum(p.numel() for p in lm.parameters()) / 1e9:.2f}B parameters -> {dest} "
      f"({time.perf_counter() - t0:.0f} s)")
EOF
head -n 4000 "$train" > "$work/train.jsonl"
cfg=training/configs/reasonrank-3b.yaml
train_cli() { local stage=$1; shift
  local t0=$SECONDS
  $py -m reasonrank_train.cli "$stage" --config "$cfg" "$@" 2>&1 | tee "$out/$stage.log"
  local s=${PIPESTATUS[0]}
  echo "recipe dry run: $stage exit $s in $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
  [ "$s" = 0 ] || rc=1
}
cpu=(); trl_cpu=()
[ "$device" = cpu ] && cpu=(--set use_cpu=true) && trl_cpu=(--set use_cpu=true --set bf16=false)
train_cli sft "${trl_cpu[@]}" --set model="$work/base" --set output_dir="$work/sft" --set max_steps="$steps" \
    --set num_train_epochs=1 --set logging_steps=1
train_cli grpo "${trl_cpu[@]}" --set model="$work/sft" --set output_dir="$work/grpo" --set train_file="$work/train.jsonl" \
    --set max_steps=$(( steps / 4 > 0 ? steps / 4 : 1 )) --set logging_steps=1
train_cli score-learn "${cpu[@]}" --set model="$work/grpo" --set output_dir="$work/score" --set train_file="$work/train.jsonl" \
    --set max_steps="$steps" --set logging_steps=1 --set eval_collection="$dev" \
    --set eval_first_stage="$dev/runs/dense.trec" --set eval_steps="$steps" --set eval_max_queries=10
train_cli export --set model="$work/score" --set output_dir="$work/export"
cp "$work/export/reasonrank.json" "$out/" 2>/dev/null || true
exit $rc
