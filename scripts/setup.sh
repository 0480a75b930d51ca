#!/usr/bin/env bash
# Install runner and what it needs into the current Python, keeping any torch already there.
# torch is pinned first: a bare requirement would make pip fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
extras="${1:-}"  # e.g. dev,postgres (what scripts/test.sh installs); postgres: psycopg 3 for PostgreSQL URLs
"$PY" -m pip install -q -e ".${extras:+[$extras]}"
# mup (the muP parametrization) declares torchvision, which would pull a CUDA torch: it imports
# only torch and yaml, so install it without its declared dependencies.
if ! "$PY" -c "import mup" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps "mup==1.0.0"
fi
