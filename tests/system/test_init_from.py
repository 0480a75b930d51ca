"""init_from (issue 18 item 7): a job starts from another job's stored weights, alone or in a fused group;
submit checks the named job exists, kept weights at that step, and that their shapes fit."""
from __future__ import annotations

import re

import numpy as np
import pytest

import runner
from runner.errors import UserError
from runner.train.loop import train

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=5, k=2, batch_size=16, width=12, depth=1, steps=40,
            n_test=32, eval_every=20)


def _weights(db: str, job_id: int, step: int) -> dict[str, np.ndarray]:
    prefix = "weights."
    return {k[len(prefix):]: v[step] for k in _names(db, job_id) if (v := runner.arrays(db, job_id, k)) and step in v}


def _names(db: str, job_id: int) -> list[str]:
    from support.databases import sql

    return [r[0] for r in sql(db, f"SELECT DISTINCT name FROM arrays WHERE job_id = {job_id} AND name LIKE 'weights.%'")]


@pytest.mark.parametrize("fuse", ["1", "auto"])
def test_jobs_start_from_another_jobs_final_weights(tmp_path, fuse):
    db = str(tmp_path / "jobs.db")
    runner.run(dict(sweep="source", base=dict(BASE, snapshots=["end"])), db=db, devices="cpu", quiet=True)
    end = _weights(db, 1, 40)
    df = runner.run(dict(sweep="warm", base=dict(BASE, snapshots=[0], init_from={"job": 1}),
                         grid=dict(lr=[0.01, 0.05, 0.1])), db=db, devices="cpu", quiet=True, fuse=fuse)
    assert (df.status == "done").all(), df.error.tolist()
    for job_id in df.job_id:
        start = _weights(db, int(job_id), 0)
        assert start.keys() == end.keys() and all(np.array_equal(start[k], end[k]) for k in end)
    if fuse == "auto":
        assert (df.fused == 3).all()


def test_submit_refuses_an_init_from_that_cannot_be_met_and_writes_nothing(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.run(dict(sweep="source", base=dict(BASE, snapshots=[0, "end"])), db=db, devices="cpu", quiet=True)
    runner.run(dict(sweep="bare", base=BASE), db=db, devices="cpu", quiet=True)
    cases = {
        "no job 9 in": dict(init_from=9),
        "job 2 stored no weights at step end (it stored them at no step)": dict(init_from=2),
        "stored no weights at step 7 (it stored them at [0, 40])": dict(init_from={"job": 1, "step": 7}),
        "weights.net.0.weight has shape (12, 5), the model's is (24, 5)": dict(init_from=1, width=24),
        "init_from must be a job id or {job: ID, step: end}": dict(init_from={"job": 1, "at": 3}),
    }
    for message, change in cases.items():
        with pytest.raises(UserError, match=re.escape(message)):
            runner.submit(dict(sweep="warm", base=dict(BASE, **change)), db=db)
    assert runner.results(db).sweep.tolist() == ["source", "bare"]


def test_train_in_process_needs_the_weights_handed_to_it():
    config = dict(BASE, init_from=1)
    with pytest.raises(UserError, match="init_from names job 1 of a queue"):
        train(config, device="cpu")
    source = train(dict(BASE, snapshots=["end"]), device="cpu")
    weights = {name[len("weights."):]: a for name, step, a in source.arrays if name.startswith("weights.")}
    out = train(dict(config, snapshots=[0]), device="cpu", initial_weights=weights)
    start = {name[len("weights."):]: a for name, step, a in out.arrays if step == 0}
    assert all(np.array_equal(start[k], weights[k]) for k in weights)
