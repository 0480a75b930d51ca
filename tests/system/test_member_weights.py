"""The members of a paired job are trained models too: runner.load_model(db, 7, member="a") (or "7.a"),
runner.connectivity(db, "7.a", "7.b"), `runner plot connectivity 7.a 7.b` and `init_from: {job: 7,
member: a}` read a member's stored weights, with its own config; a paired job named without a member
says which members it has. Through the real queue."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from runner.errors import UserError
from runner.train.data import JobData
from runner.train.loop import job_seeds
from runner.train.optim import LOSSES
from runner.train.options import member_config
from runner.train.plan import plan_job

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRED = dict(sweep="pair", batchfn="moons", model="mlp",
              base=dict(width=16, depth=2, loss="cross_entropy", batch_size=32, steps=60, n_test=128, eval_every=20,
                        snapshots=[0, "end"], members={"a": {"model_seed": 1}, "b": {"model_seed": 2, "lr": 0.2}}))


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> tuple[str, dict]:
    db = str(tmp_path_factory.mktemp("paired") / "jobs.db")
    df = runner.run(PAIRED, db=db, devices="cpu", quiet=True)
    assert df.status.tolist() == ["done"]
    import json

    from support.databases import sql
    return db, json.loads(sql(db, "SELECT config FROM jobs WHERE id = 1")[0][0]) | {"row": df.iloc[0].to_dict()}


def _test_loss(model: torch.nn.Module, config: dict) -> float:
    plan = plan_job(config)
    data = JobData(plan, torch.device("cpu"), job_seeds(plan.options))
    with torch.no_grad():
        return LOSSES["cross_entropy"](model(data.X_test), data.y_test).item()


def test_each_members_model_reproduces_its_final_test_loss(paired):
    db, config = paired
    row = config.pop("row")
    for name in ("a", "b"):
        model = runner.load_model(db, 1, member=name)
        assert _test_loss(model, member_config(config, name)) == pytest.approx(row[f"{name}.final_test_loss"], rel=1e-5)
        same = runner.load_model(db, f"1.{name}")
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), same.parameters()))
    a, b = runner.load_model(db, "1.a"), runner.load_model(db, "1.b")
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_paired_job_without_its_member_named_says_which_it_has(paired):
    db, _ = paired
    with pytest.raises(UserError, match=r"job 1 trained the members a, b: name one, e.g. 1.a"):
        runner.load_model(db, 1)
    with pytest.raises(UserError, match=r"job 1 has no member 'c': its members are a, b"):
        runner.load_model(db, "1.c")
    with pytest.raises(UserError, match=r"'1.a' names member 'a', and member='b' another"):
        runner.load_model(db, "1.a", member="b")
    with pytest.raises(UserError, match=r"stored weights at steps \[0, 60\], not at 30"):
        runner.load_model(db, "1.a", step=30)


def test_the_connectivity_of_two_members(paired, run_cli, tmp_path):
    db, _ = paired
    found = runner.connectivity(db, "1.a", "1.b", points=5)
    assert found["jobs"] == ("1.a", "1.b") and len(found["loss"]) == 5 and found["barrier"] >= 0
    same = runner.connectivity(db, "1.a", "1.a", points=5)
    assert same["barrier"] == pytest.approx(0.0, abs=1e-9)
    out = run_cli("plot", "connectivity", "1.a", "1.b", "--align", "none", "--points", "5", "--db", db,
                  "-o", str(tmp_path / "c.png"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.png").stat().st_size > 0 and "barrier" in out.stdout
    bad = run_cli("plot", "connectivity", "1.a", "one", "--db", db)
    assert bad.returncode == 2 and "'one' is not a job id (7) or a member of a paired job (7.a)" in bad.stderr
    unnamed = run_cli("plot", "connectivity", "1", "1.b", "--db", db)
    assert unnamed.returncode == 2 and "job 1 trained the members a, b" in unnamed.stderr


def test_a_job_starts_from_a_members_weights(paired):
    db, _ = paired
    end = {name: p.detach().numpy() for name, p in runner.load_model(db, "1.b").named_parameters()}
    base = {k: v for k, v in PAIRED["base"].items() if k != "members"}
    df = runner.run(dict(sweep="warm", batchfn="moons", model="mlp",
                         base=dict(base, snapshots=[0], init_from={"job": 1, "member": "b"})),
                    db=db, devices="cpu", quiet=True)
    assert df.status.tolist() == ["done"], df.error.tolist()
    start = {name: p.detach().numpy()
             for name, p in runner.load_model(db, int(df.job_id.iloc[0]), step=0).named_parameters()}
    assert start.keys() == end.keys() and all(np.array_equal(start[k], end[k]) for k in end)
    with pytest.raises(UserError, match=r"init_from: job 1 trained the members a, b"):
        runner.submit(dict(sweep="cold", batchfn="moons", model="mlp", base=dict(base, init_from={"job": 1})), db=db)
    with pytest.raises(UserError, match=r"init_from must be .*member must be a member's name"):
        runner.submit(dict(sweep="cold", batchfn="moons", model="mlp",
                           base=dict(base, init_from={"job": 1, "member": "no such"})), db=db)
