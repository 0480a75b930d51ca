#!/usr/bin/env bash
# Install the test dependencies, then run the test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,postgres
# The `postgres` tests use the server at 127.0.0.1:5432 (RUNNER_TEST_PG overrides the URL): start it
# where a service can be started; where none answers, those tests skip and say why.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    (service postgresql start || pg_ctlcluster --skip-systemctl-redirect 15 main start) >/dev/null 2>&1 || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
# plain `pytest` skips tests marked slow; the test command (and CI) runs them too
exec "${PYTHON:-python3}" -m pytest -m "slow or not slow" "$@"
