"""Fused groups through the real `runner workers --fuse K`: jobs of one fusion key are claimed together
and trained as one batched model, each written back as its own job, with what it gives alone."""
from __future__ import annotations

import os
import signal
import time

import pytest
from support.databases import sql
from support.jobs import SLOW
from support.processes import start_workers, stop_when, wait_for, worker_pids

import runner

TINY = dict(batchfn="gaussian_teacher", model="mlp", d=4, k=2, batch_size=16, width=8, depth=1, steps=60,
            n_test=32, eval_every=20)


def test_workers_fuse_jobs_of_one_key_and_each_gives_what_it_gives_alone(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    grid = dict(sweep="fused", base=TINY, grid=dict(width=[8, 16], lr=[0.05, 0.1], seed=[0, 1, 2]))  # 2 keys x 6
    runner.submit(grid, db=db)
    done = run_cli("workers", "--devices", "cpu", "--fuse", "4", "--db", db, "--quiet")
    assert done.returncode == 0, done.stderr
    df = runner.results(db, "fused")
    assert len(df) == 12 and (df.status == "done").all() and (df.attempts == 1).all()
    assert sorted(df.fused.tolist()) == [2] * 4 + [4] * 8  # per key: a group of 4, then the 2 left
    assert sql(db, "SELECT count(*), count(DISTINCT job_id), max(token) FROM attempts") == [(12, 12, 1)]
    for row in df.itertuples():
        alone = runner.train(dict(TINY, width=row.width, lr=row.lr, seed=row.seed), device="cpu")
        assert row.final_test_loss == pytest.approx(alone.summary["final_test_loss"], rel=1e-5)
        assert row.steps_run == alone.summary["steps_run"]


def test_fuse_1_trains_every_job_alone_and_auto_fuses_on_the_cpu_too(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="alone", base=TINY, grid=dict(seed=[0, 1])), db=db)
    assert run_cli("workers", "--devices", "cpu", "--fuse", "1", "--db", db, "--quiet").returncode == 0
    df = runner.results(db, "alone")
    assert (df.status == "done").all() and "fused" not in df.columns
    runner.submit(dict(sweep="auto", base=TINY, grid=dict(seed=list(range(20)))), db=db)
    assert run_cli("workers", "--devices", "cpu", "--db", db, "--quiet").returncode == 0  # --fuse auto: 16 on the CPU
    assert sorted(runner.results(db, "auto").fused.tolist()) == [4] * 4 + [16] * 16  # one worker: all its share


def test_max_jobs_caps_a_fused_claim(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="cap", base=TINY, grid=dict(seed=list(range(6)))), db=db)
    done = run_cli("workers", "--devices", "cpu", "--fuse", "4", "--max-jobs", "3", "--db", db, "--quiet")
    assert done.returncode == 0, done.stderr
    df = runner.results(db, "cap")
    assert sorted(df.status) == ["done"] * 3 + ["pending"] * 3 and set(df.fused.dropna()) == {3}


def test_a_stopped_fused_group_checkpoints_every_member_and_resumes_fused(tmp_path, show):
    """SIGTERM mid-group: every member goes back to the queue with its checkpoint and no attempt
    used; the next `runner workers --fuse` resumes them as one group, with an uninterrupted run's numbers."""
    db = str(tmp_path / "jobs.db")
    base = dict(SLOW, steps=1500, delay=0.002, checkpoint_every=50)
    runner.submit(dict(sweep="stopfused", base=base, grid=dict(seed=[0, 1, 2])), db=db)
    folder = tmp_path / "jobs-checkpoints"
    proc = start_workers(db, "--per-device", "1", "--fuse", "3")
    err = stop_when(proc, lambda: len(list(folder.glob("job-*.pt"))) == 3)
    assert proc.returncode == 0 and "Traceback" not in err, err
    df = runner.results(db, sweep="stopfused")
    assert (df.status == "pending").all() and (df.attempts == 0).all()
    assert len(list(folder.glob("job-*.pt"))) == 3
    again = start_workers(db, "--per-device", "1", "--fuse", "3")
    again.communicate(timeout=240)
    assert again.returncode == 0
    df = runner.results(db, sweep="stopfused")
    assert (df.status == "done").all() and (df.fused == 3).all()
    assert df.resumed_from_step.nunique() == 1 and (df.resumed_from_step >= 50).all()  # resumed together, not from 0
    for row in df.itertuples():
        whole = runner.train(dict(base, delay=0.0, seed=int(row.seed)), device="cpu")
        assert row.final_test_loss == pytest.approx(whole.summary["final_test_loss"], rel=1e-4)
    assert list(folder.glob("job-*.pt")) == []
    show(f"\nfused group stopped and resumed from step {int(df.resumed_from_step.iloc[0])} of 1500, as one group")


def test_a_killed_fused_group_returns_every_member_to_the_queue(tmp_path):
    """SIGKILL to the worker training a group: every member goes back to pending (an attempt used,
    as for a job alone), the replacement worker trains them again, none is lost or done twice."""
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="killfused", base=dict(SLOW, steps=600, delay=0.003), grid=dict(seed=[0, 1, 2, 3])), db=db)
    proc = start_workers(db, "--per-device", "1", "--fuse", "4")
    try:
        wait_for(lambda: sql(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == [(4,)], timeout=90)
        time.sleep(0.5)
        os.kill(worker_pids(proc.pid)[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "died (signal 9)" in err, err
    df = runner.results(db, "killfused")
    assert (df.status == "done").all() and (df.attempts == 2).all() and (df.fused == 4).all()
    assert sql(db, "SELECT count(*), count(DISTINCT job_id) FROM results") == [(4, 4)]
