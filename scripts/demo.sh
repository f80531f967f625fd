#!/usr/bin/env bash
# The main job: rerank the bundled sample offline with the local SmolLM2-135M-Instruct (reasoning mode).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
reasonrank rerank --model smollm2-local --query "how does BM25 score documents" \
  --docs examples/sample.jsonl --top-k 3 --max-new-tokens 64 "$@"
