#!/usr/bin/env bash
# Install the test dependencies, then run the test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# plain `pytest` skips tests marked slow; the test command (and CI) runs them too
exec "${PYTHON:-python3}" -m pytest -m "slow or not slow" "$@"
