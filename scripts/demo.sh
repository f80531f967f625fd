#!/usr/bin/env bash
# The main job: BM25 over a bundled sample, then the shipped default model (reasonrank-tiny, offline on CPU)
# reranks the candidates by its own score (direct mode; --fusion-weight 0: the model card's fusion weight is
# tuned for a dense first stage, see README) and explains each one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "setting up .venv (log: setup.log) ..."
bash scripts/setup.sh > setup.log 2>&1 || { tail -n 40 setup.log; echo "setup failed: see setup.log" >&2; exit 1; }
. .venv/bin/activate
export HF_HUB_OFFLINE=1
reasonrank rerank --query "how does BM25 score documents" --docs examples/search-sample.jsonl \
  --first-stage bm25 --fusion-weight 0 --explain --max-new-tokens 64 "$@"
