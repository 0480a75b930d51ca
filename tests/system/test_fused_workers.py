"""Fused groups through the real `runner workers --fuse K`: jobs of one fusion key are claimed together
and trained as one batched model, each written back as its own job, with what it gives alone."""
from __future__ import annotations

import pytest
from support.databases import sql

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
        assert row.steps == alone.summary["steps"]


def test_without_fuse_every_job_trains_alone(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="alone", base=TINY, grid=dict(seed=[0, 1])), db=db)
    assert run_cli("workers", "--devices", "cpu", "--db", db, "--quiet").returncode == 0
    df = runner.results(db, "alone")
    assert (df.status == "done").all() and "fused" not in df.columns


def test_max_jobs_caps_a_fused_claim(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="cap", base=TINY, grid=dict(seed=list(range(6)))), db=db)
    done = run_cli("workers", "--devices", "cpu", "--fuse", "4", "--max-jobs", "3", "--db", db, "--quiet")
    assert done.returncode == 0, done.stderr
    df = runner.results(db, "cap")
    assert sorted(df.status) == ["done"] * 3 + ["pending"] * 3 and set(df.fused.dropna()) == {3}
