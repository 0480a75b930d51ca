"""Errors a retry cannot fix fail the job at its first attempt, with the cause; errors while
training keep their retries (test_workers' failing-jobs test)."""
from __future__ import annotations

from support.databases import sql

import runner


def test_a_config_the_batch_function_refuses_fails_at_the_first_attempt(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    base = dict(batchfn="circles", model="mlp", batch_size=16, width=8, steps=5, n_test=0, loss="cross_entropy",
                circle_factor=1.5, max_attempts=3)  # circles checks circle_factor < 1 in its factory
    runner.submit(dict(sweep="refused", base=base), db=db)
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert out.returncode == 1 and out.stderr.splitlines()[-1] == "runner workers: 1 failed (exit 1)"
    df = runner.results(db, "refused")
    assert df.status.tolist() == ["failed"] and df.attempts.tolist() == [1]  # not retried
    assert "batch function circles refused the job's config: ValueError: circles: circle_factor" in df.error[0]


def test_a_module_the_workers_cannot_import_fails_at_the_first_attempt(tmp_path, run_cli):
    """Submitted from the folder that holds the module, workers started from another folder."""
    here, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "mydata.py").write_text(
        "import torch\n"
        "def mydata(d: int, batch_size: int, *, gen, device):\n"
        "    def batch(step):\n"
        "        X = torch.randn(batch_size, d, generator=gen, device=device)\n"
        "        return X, X.sum(1, keepdim=True)\n"
        "    return batch\n")
    db = str(tmp_path / "jobs.db")
    (here / "grid.yaml").write_text("sweep: away\nbatchfn: mydata:mydata\nmodel: mlp\n"
                                    "base: {d: 3, batch_size: 8, steps: 5, n_test: 0, max_attempts: 3}\n")
    assert run_cli("submit", "grid.yaml", "--db", db, cwd=here).returncode == 0
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet", cwd=elsewhere)
    assert out.returncode == 1, out.stderr
    assert sql(db, "SELECT status, attempts FROM jobs") == [("failed", 1)]
    error = sql(db, "SELECT error FROM jobs")[0][0]
    assert "cannot import module 'mydata'" in error and "run from the folder that holds mydata.py" in error


def test_a_failed_job_does_not_poison_the_jobs_after_it_on_its_worker(tmp_path, run_cli):
    """A job that leaks and dies of MemoryError leaves its process unfit; the worker is recycled
    after a failed job, so the healthy jobs that follow on the same device finish."""
    db = str(tmp_path / "jobs.db")
    base = dict(batchfn="plugins_for_tests:leaking_batchfn", model="mlp", d=3, batch_size=8, steps=6, n_test=0,
                max_attempts=2)
    runner.submit(dict(sweep="leak", base=dict(base, leak=True, priority=1)), db=db)  # claimed first
    runner.submit(dict(sweep="healthy", base=base, grid=dict(seed=[0, 1, 2, 3])), db=db)
    out = run_cli("workers", "--devices", "cpu", "--fuse", "1", "--db", db, "--quiet")
    assert out.returncode == 1 and out.stderr.splitlines()[-1] == "runner workers: 4 done, 1 failed (exit 1)"
    assert sql(db, "SELECT sweep, status, attempts FROM jobs ORDER BY id") == \
        [("leak", "failed", 2)] + [("healthy", "done", 1)] * 4
    assert "leaked until it ran out of memory" in sql(db, "SELECT error FROM jobs WHERE sweep = 'leak'")[0][0]


def test_max_jobs_counts_the_jobs_of_a_recycled_workers_earlier_processes(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    base = dict(batchfn="plugins_for_tests:leaking_batchfn", model="mlp", d=3, batch_size=8, steps=6, n_test=0,
                max_attempts=1)
    runner.submit(dict(sweep="leak", base=dict(base, leak=True, priority=1)), db=db)
    runner.submit(dict(sweep="healthy", base=base, grid=dict(seed=[0, 1, 2, 3])), db=db)
    out = run_cli("workers", "--devices", "cpu", "--fuse", "1", "--max-jobs", "2", "--db", db, "--quiet")
    assert out.returncode == 1, out.stderr
    assert sql(db, "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status") == \
        [("done", 1), ("failed", 1), ("pending", 3)]  # two jobs in all: one before the recycle, one after
