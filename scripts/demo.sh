#!/usr/bin/env bash
# The main job: rerank the bundled sample offline with the local SmolLM2-135M-Instruct (reasoning mode).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setting up .venv (log: setup.log) ..."
bash scripts/setup.sh > setup.log 2>&1 || { tail -n 40 setup.log; echo "setup failed: see setup.log" >&2; exit 1; }
. .venv/bin/activate
export HF_HUB_OFFLINE=1
reasonrank rerank --model smollm2-local --query "how does BM25 score documents" \
  --docs examples/sample.jsonl --top-k 3 --max-new-tokens 64 "$@"
