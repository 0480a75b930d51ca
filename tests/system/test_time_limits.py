"""No job runs forever: a job past its `timeout`, a cancelled job and a stop request end a worker
stuck in a job's own code within seconds, enforced from outside that code."""
from __future__ import annotations

import signal
import time

from support.databases import sql
from support.processes import start_workers, wait_for

import runner

STUCK = dict(batchfn="plugins_for_tests:sleeping_batchfn", model="mlp", d=3, batch_size=8, steps=20, n_test=0)


def _running(db: str) -> bool:
    return sql(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == [(1,)]


def test_a_job_past_its_timeout_ends_failed_and_the_next_job_runs(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="stuck", base=dict(STUCK, sleep_at=3, timeout=2, max_attempts=1, priority=1)), db=db)
    runner.submit(dict(sweep="fine", base=dict(STUCK, sleep_at=-1)), db=db)
    t0 = time.monotonic()
    out = run_cli("workers", "--devices", "cpu", "--fuse", "1", "--db", db, "--quiet", timeout=120)
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - t0 < 60
    assert sql(db, "SELECT sweep, status, attempts FROM jobs ORDER BY id") == [("stuck", "failed", 1), ("fine", "done", 1)]
    assert "timed out after 2 s" in sql(db, "SELECT error FROM jobs WHERE sweep = 'stuck'")[0][0]


def _stuck_then(db: str, act) -> tuple[float, int, str]:
    """Start one worker on a job stuck in its batch function, then `act()`: (seconds from the act
    to the pool's exit, its exit code, its stderr)."""
    runner.submit(dict(sweep="stuck", base=dict(STUCK, sleep_at=3)), db=db)
    proc = start_workers(db, "--fuse", "1")
    try:
        wait_for(lambda: _running(db), timeout=90)
        time.sleep(1.0)
        t0 = time.monotonic()
        act(proc)
        _, err = proc.communicate(timeout=60)
        return time.monotonic() - t0, proc.returncode, err
    finally:
        proc.kill()


def test_cancel_ends_a_running_job_stuck_in_its_code_within_seconds(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    took, code, err = _stuck_then(db, lambda proc: run_cli("cancel", "1", "--db", db))
    assert code == 0 and took < 15, (took, err)
    assert sql(db, "SELECT status FROM jobs") == [("cancelled",)]


def test_a_stop_that_a_stuck_job_does_not_answer_releases_it(tmp_path):
    db = str(tmp_path / "jobs.db")
    took, code, err = _stuck_then(db, lambda proc: proc.send_signal(signal.SIGTERM))  # one signal
    assert code == 0 and took < 30, (took, err)
    assert sql(db, "SELECT status, attempts FROM jobs") == [("pending", 0)]
