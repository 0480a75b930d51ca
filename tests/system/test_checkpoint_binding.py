"""Checkpoints bound to the database's record of them (issue 16 item 6), through real workers: a file
planted for a job that never ran, or put in place of one a worker wrote, is ignored with a warning
and the job trains from step 0 to the numbers it gives uninterrupted; a genuine file still resumes."""
from __future__ import annotations

import json

import pytest
import torch
from support.databases import sql
from support.jobs import SLOW, StopAfter
from support.processes import start_workers, stop_when

import runner
from runner.hashing import config_hash
from runner.pool.checkpoint_dir import job_path
from runner.train.loop import train

BASE = dict(SLOW, steps=400, checkpoint_every=50, seed=3, delay=0.005)


def _forge(tmp_path, db: str, job_id: int) -> dict:
    """A well-formed checkpoint of job `job_id` (its config hash) with zeroed weights at step 299, as the
    issue's tester made; what the old code resumed from."""
    stored = json.loads(sql(db, f"SELECT config FROM jobs WHERE id = {job_id}")[0][0])
    path = tmp_path / "made-elsewhere.pt"
    train(dict(stored, delay=0.0), device="cpu", should_stop=StopAfter(300), checkpoint_path=path)
    state = torch.load(path, weights_only=True)
    state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
    state["step"], state["config_hash"] = 299, config_hash(stored)
    return state


def test_a_checkpoint_planted_for_a_job_that_never_ran_is_ignored(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    config = dict(BASE, delay=0.0)
    runner.submit(dict(sweep="planted", base=config), db=db)
    (job_id, stored), = sql(db, "SELECT id, config FROM jobs")
    path = job_path(tmp_path / "jobs-checkpoints", job_id, config_hash(json.loads(stored)))
    path.parent.mkdir(mode=0o700)
    torch.save(_forge(tmp_path, db, job_id), path)

    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert out.returncode == 0, out.stderr
    df = runner.results(db, "planted")
    assert df.status.tolist() == ["done"] and ("resumed_from_step" not in df or df.resumed_from_step.isna().all())
    assert df.final_test_loss.iloc[0] == pytest.approx(train(config, device="cpu").summary["final_test_loss"], rel=1e-6)
    assert "ignoring checkpoint" in out.stderr and "records no checkpoint for this job" in out.stderr


def test_a_genuine_checkpoint_replaced_by_a_forgery_is_ignored_and_the_genuine_one_resumes(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="binding", base=BASE, grid=dict(seed=[3, 4])), db=db)
    folder = tmp_path / "jobs-checkpoints"
    proc = start_workers(db, "--per-device", "2", "--fuse", "1")
    err = stop_when(proc, lambda: len(list(folder.glob("job-*.pt"))) == 2)
    assert proc.returncode == 0, err
    digests = dict(sql(db, "SELECT id, checkpoint_digest FROM jobs"))
    assert all(d and d.startswith("sha256:") for d in digests.values())  # recorded as they were written
    files = {int(p.name.split("-")[1]): p for p in folder.glob("job-*.pt")}
    torch.save(_forge(tmp_path, db, 1), files[1])  # job 1 is seed 3

    again = start_workers(db, "--per-device", "2", "--fuse", "1")
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    assert "ignoring checkpoint" in err and "not the one the database recorded" in err
    df = runner.results(db, "binding").set_index("seed")
    assert (df.status == "done").all()
    assert pd_isna(df.resumed_from_step[3]) and df.resumed_from_step[4] >= 50  # forged: from 0; genuine: resumed
    for seed in (3, 4):
        whole = train(dict(BASE, delay=0.0, seed=seed), device="cpu")
        assert df.final_test_loss[seed] == pytest.approx(whole.summary["final_test_loss"], rel=1e-4)


def pd_isna(value) -> bool:
    return value != value or value is None
