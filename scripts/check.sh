#!/usr/bin/env bash
# Lint, type-check and test (the README's test command). Sets up ./.venv first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vecclf ] || bash scripts/setup.sh
.venv/bin/ruff check vecclf tests benchmarks
.venv/bin/ruff format --check vecclf
.venv/bin/mypy vecclf
.venv/bin/python -m pytest -q "$@"
