"""Leases follow the database's clock (issue 15 item 8): a pool whose host clock runs 120 s ahead of
the others' must not reap their claims (a 60 s lease looked expired to it the moment it was taken).
The ahead pool is a real `runner workers` whose processes (supervisor and spawned workers) see a
shifted `time.time`, through a sitecustomize module on their PYTHONPATH."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.databases import sql
from support.processes import cli_env

import runner

AHEAD_S = 120.0
SHIFT = f'''import time
_real = time.time
time.time = lambda: _real() + {AHEAD_S}
'''
SLOW = dict(batchfn="plugins_for_tests:slow_teacher", model="mlp", d=3, batch_size=8, steps=150, delay=0.01, n_test=0,
            max_attempts=2)


def _pool(db: str, host: str, shifted: Path | None) -> subprocess.Popen:
    env = cli_env()
    if shifted is not None:
        env["PYTHONPATH"] = f"{shifted}:{env['PYTHONPATH']}"
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--per-device", "2",
                             "--fuse", "1", "--host-id", host, "--db", db, "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_host_whose_clock_runs_ahead_reaps_no_live_lease(url, tmp_path, show):
    shifted = tmp_path / "clock_ahead"
    shifted.mkdir()
    (shifted / "sitecustomize.py").write_text(SHIFT)
    check = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True,
                           env={**cli_env(), "PYTHONPATH": str(shifted)})
    import time
    assert float(check.stdout) - time.time() > AHEAD_S - 5, "the shifted clock did not take"

    runner.submit(dict(sweep="skew", base=SLOW, grid=dict(seed=list(range(16)))), db=url)
    behind, ahead = _pool(url, "behind", None), _pool(url, "ahead", shifted)  # each claims while the other's leases run
    outs = [p.communicate(timeout=300) for p in (behind, ahead)]
    codes = [behind.returncode, ahead.returncode]
    rows = sql(url, "SELECT status, count(*) FROM jobs GROUP BY status")
    outcomes = sql(url, "SELECT outcome, count(*) FROM attempts GROUP BY outcome ORDER BY outcome")
    hosts = sql(url, "SELECT host, count(*) FROM jobs GROUP BY host ORDER BY host")
    show(f"clock {AHEAD_S:.0f} s ahead on one host: jobs {rows}, attempts {outcomes}, ran on {hosts}, exits {codes}")
    assert rows == [("done", 16)], outs
    assert outcomes == [("done", 16)], "an attempt ended other than done: a live lease was reaped"
    assert codes == [0, 0], outs
    assert {h for h, _ in hosts} == {"ahead", "behind"}, "both hosts must have run jobs for the test to mean anything"
