#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, submit the example grid to
# ./jobs.db, run workers on every GPU present (else two CPU workers), print the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-python3}"
# runner run: submit, run workers until the sweep is done, print its results (one command)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m runner.cli run examples/quickstart.yaml --per-device 2
else
    "$PY" -m runner.cli run examples/quickstart.yaml --devices cpu --per-device 2
fi
"$PY" -m runner.cli status
