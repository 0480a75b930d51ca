"""The plug-in policy in the worker (issue 16 item 2): a row written straight into the database,
past submit's checks, that names `os:system` fails at its first attempt with the policy's reason,
and the shell command it carries never runs; the worker goes on with the other jobs."""
from __future__ import annotations

import json

from support.databases import sql

import runner

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=4, batch_size=8, steps=5, n_test=0, max_attempts=3)


def _plant(db: str, **changes: object) -> None:
    """Insert a copy of the database's first job with its config changed, as anyone with INSERT on a
    shared queue could (alone in its fusion group: the copy trains by itself)."""
    config = json.dumps(dict(json.loads(sql(db, "SELECT config FROM jobs ORDER BY id")[0][0]), **changes))
    sql(db, "INSERT INTO jobs (sweep, config_hash, config, status, priority, attempts, max_attempts, token, created_at) "
            "SELECT sweep, 'planted', :config, status, priority, attempts, max_attempts, token, created_at "
            "FROM jobs ORDER BY id LIMIT 1", {"config": config})


def test_a_planted_row_naming_os_system_fails_in_the_worker_without_running_it(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="planted", base=BASE), db=db)
    _plant(db, model="os:system", command="id > pwned.txt")

    out = run_cli("workers", "--devices", "cpu", "--fuse", "1", "--db", db, "--quiet")  # in tmp_path

    assert not (tmp_path / "pwned.txt").exists(), "the worker ran the planted shell command"
    assert out.returncode == 1 and out.stderr.splitlines()[-1] == "runner workers: 1 done, 1 failed (exit 1)", out.stderr
    assert sql(db, "SELECT config_hash = 'planted', status, attempts FROM jobs ORDER BY id") == \
        [(0, "done", 1), (1, "failed", 1)]  # refused for good: not retried
    error = sql(db, "SELECT error FROM jobs WHERE config_hash = 'planted'")[0][0]
    assert "model 'os:system' is refused: os is the standard library" in error, error
