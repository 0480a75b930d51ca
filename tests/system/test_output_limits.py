"""What a job writes back is bounded, and a worker that dies says why: oversized arrays fail their
job at once with the cause; a dead worker's last output is stored with the attempt it lost."""
from __future__ import annotations

from support.databases import sql

import runner

TINY = dict(batchfn="gaussian_teacher", model="mlp", d=3, batch_size=8, steps=10, n_test=0)


def test_an_array_over_the_limit_fails_its_job_at_the_first_attempt_with_the_cause(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="big", base=dict(TINY, grabs=["plugins_for_tests:big_array"], max_attempts=3)), db=db)
    runner.submit(dict(sweep="small", base=TINY), db=db)
    out = run_cli("workers", "--devices", "cpu", "--fuse", "1", "--db", db, "--quiet", env={"RUNNER_MAX_ARRAY_MB": "1"})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert sql(db, "SELECT sweep, status, attempts FROM jobs ORDER BY id") == [("big", "failed", 1), ("small", "done", 1)]
    error = sql(db, "SELECT error FROM jobs WHERE sweep = 'big'")[0][0]
    assert "array 'big_array' at step 10 is 2.3 MiB, over the limit of 1 MiB per array" in error


def test_a_dead_workers_last_output_is_stored_with_the_attempt_it_lost(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="dies", base=dict(TINY, batchfn="plugins_for_tests:dying_batchfn", max_attempts=1)), db=db)
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert out.returncode == 1, out.stderr
    error = sql(db, "SELECT error FROM jobs")[0][0]
    assert error.startswith("worker process died (exit code 3); its last output:")
    assert "dying on purpose: the native library gave up" in error
