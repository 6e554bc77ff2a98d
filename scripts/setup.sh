#!/usr/bin/env bash
# Create ./.venv (if missing) and install vecclf with its test tools.
# torch/torchvision are pinned first: on these machines they come from local wheels (a CPU-capable build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[dev,faces]"
# tests/test_web.py drives Debian's Chromium (Playwright only talks to it; nothing is downloaded)
if ! command -v chromium > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q chromium > /dev/null || echo "warning: could not install chromium (tests/test_web.py will need it)" >&2
fi
echo "vecclf installed in $(pwd)/.venv" >&2
