"""runner.load_model (issue 18 item 7): a finished job's model rebuilt from its config with the weights
it stored reproduces the job's final test loss; what cannot be loaded says why in one line."""
from __future__ import annotations

import json

import pytest
import torch
from support.databases import sql

import runner
from runner.errors import UserError
from runner.train.data import JobData
from runner.train.loop import job_seeds
from runner.train.optim import LOSSES
from runner.train.plan import plan_job

GRID = dict(sweep="kept", batchfn="moons", model="mlp",
            base=dict(batch_size=32, loss="cross_entropy", hidden_dims=[16, 8], steps=60, n_test=128, eval_every=20,
                      snapshots=[0, "end"]),
            grid=dict(model_seed=[0, 1]))


def test_a_loaded_model_reproduces_the_jobs_final_test_loss(tmp_path):
    db = str(tmp_path / "jobs.db")
    df = runner.run(GRID, db=db, devices="cpu", quiet=True, fuse="1")
    for row in df.itertuples():
        model = runner.load_model(db, row.job_id)
        config = json.loads(sql(db, f"SELECT config FROM jobs WHERE id = {row.job_id}")[0][0])
        plan = plan_job(config)
        data = JobData(plan, torch.device("cpu"), job_seeds(plan.options))
        with torch.no_grad():
            loss = LOSSES["cross_entropy"](model(data.X_test), data.y_test).item()
        assert loss == pytest.approx(row.final_test_loss, rel=1e-5)
        first = runner.load_model(db, row.job_id, step=0)  # the initial weights differ from the trained ones
        assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), model.parameters()))


def test_what_cannot_be_loaded_says_why(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.run(dict(GRID, base=dict(GRID["base"], snapshots=[]), grid={}), db=db, devices="cpu", quiet=True)
    with pytest.raises(UserError, match="stored no weights: give its grid `snapshots: \\[end\\]`"):
        runner.load_model(db, 1)
    with pytest.raises(UserError, match="no job 99"):
        runner.load_model(db, 99)
    db2 = str(tmp_path / "kept.db")
    runner.run(GRID, db=db2, devices="cpu", quiet=True)
    with pytest.raises(UserError, match="stored weights at steps \\[0, 60\\], not at 30"):
        runner.load_model(db2, 1, step=30)


def test_keep_final_keeps_the_weights_a_model_loads_from(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.run(dict(GRID, base=dict(GRID["base"], snapshots=[], keep_final=True), grid={}), db=db, devices="cpu",
               quiet=True)
    model = runner.load_model(db, 1)
    assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(UserError, match="stored weights at steps \\[60\\], not at 0"):
        runner.load_model(db, 1, step=0)
