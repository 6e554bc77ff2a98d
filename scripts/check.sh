#!/usr/bin/env bash
# Lint, type-check, smoke-run the benchmarks, then test (the README's test command).
# Sets up ./.venv first if it is missing; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vecclf ] || bash scripts/setup.sh
.venv/bin/ruff check vecclf tests benchmarks
.venv/bin/ruff format --check vecclf benchmarks tests
.venv/bin/mypy vecclf
# benchmarks are not timed in CI: tiny sizes prove they still run
(
  cd benchmarks
  ../.venv/bin/python bench_head.py --smoke > /dev/null
  ../.venv/bin/python bench_classifiers.py --smoke > /dev/null
  ../.venv/bin/python bench_http.py --smoke > /dev/null
  ../.venv/bin/python bench_faces.py --smoke > /dev/null
  ../.venv/bin/python bench_knn.py --smoke > /dev/null
  ../.venv/bin/python bench_index.py --smoke > /dev/null
  ../.venv/bin/python bench_scale.py --smoke > /dev/null
  ../.venv/bin/python bench_embed.py --smoke > /dev/null
  ../.venv/bin/python bench_predict.py --smoke > /dev/null
  ../.venv/bin/python bench_import.py --smoke > /dev/null
  ../.venv/bin/python bench_openset.py --smoke > /dev/null
)
echo "benchmarks: smoke runs ok"
.venv/bin/python -m pytest -q "$@"
