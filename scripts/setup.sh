#!/usr/bin/env bash
# Install runner and what it needs into the current Python, keeping any torch already there.
# torch is pinned first: a bare requirement would make pip fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
extras="${1:-}"
"$PY" -m pip install -q -e ".${extras:+[$extras]}"
