#!/usr/bin/env bash
# Static checks (run by .ci/run before the tests): ruff (pyflakes, pycodestyle, imports, bugbear, pyupgrade) on
# every Python tree, mypy --strict on the core package (settings in pyproject.toml). Needs .venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check reasonrank training benchmarks tests integrations conftest.py
.venv/bin/mypy
