"""Jobs of members (issue 18 item 2): named variants of one job trained on the same data and compared.
Known answers: identical members are at distance 0 and cosine 1 at every step; members that differ
only in model_seed share every batch; each member gives what it gives as a job of its own; a paired
job is one row with per-member columns, through the real queue and CLI."""
from __future__ import annotations

import pytest

import runner
from runner.errors import UserError
from runner.queue.submission import submit
from runner.train.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = dict(batchfn="moons", model="mlp", width=16, depth=2, loss="cross_entropy", batch_size=32, steps=60,
            n_test=128, eval_every=20, grab_every=20)


def _series(result, name):
    return [(s, v) for s, n, v in result.metrics if n == name]


def test_identical_members_stay_at_distance_zero_and_cosine_one():
    out = train(dict(BASE, members={"a": {}, "b": {}}), device="cpu")
    assert out.status == "done"
    assert [s for s, _ in _series(out, "param_distance")] == [0, 20, 40, 60]
    assert all(v == 0.0 for _, v in _series(out, "param_distance"))
    assert all(v == pytest.approx(1.0, abs=1e-12) for _, v in _series(out, "param_cosine"))
    assert all(v == 0.0 for _, v in _series(out, "output_distance"))
    assert out.summary["a.final_test_loss"] == out.summary["b.final_test_loss"]
    assert out.summary["final_param_distance"] == 0.0 and "members" not in out.summary  # (a config key)


def test_members_differing_in_model_seed_share_every_batch_and_each_trains_as_it_would_alone():
    grabs = ["plugins_for_tests:batch_sum"]
    members = {"a": {"model_seed": 1}, "b": {"model_seed": 2}}
    out = train(dict(BASE, grabs=grabs, members=members), device="cpu")
    a, b = _series(out, "a.batch_sum"), _series(out, "b.batch_sum")
    assert len(a) == 3 and a == b  # the same last batch at every grab step (none yet at step 0)
    assert all(v > 0 for _, v in _series(out, "param_distance"))
    for name, keys in members.items():
        alone = train(dict(BASE, grabs=grabs, **keys), device="cpu")
        assert out.summary[f"{name}.final_test_loss"] == pytest.approx(alone.summary["final_test_loss"], rel=1e-5)
        assert [v for _, v in _series(out, f"{name}.test_loss")] == pytest.approx(
            [v for _, v in _series(alone, "test_loss")], rel=1e-5)


def test_members_of_different_shapes_train_one_after_the_other_and_compare_outputs():
    members = {"narrow": {"width": 8}, "wide": {"width": 32, "batch_size": 8}}
    out = train(dict(BASE, members=members, snapshots=["end"]), device="cpu")
    assert out.status == "done"
    assert not _series(out, "param_distance")  # shapes differ: only the outputs compare
    assert [s for s, _ in _series(out, "output_distance")] == [0, 20, 40, 60]
    assert "narrow.fused" not in out.summary
    assert {n for n, _, _ in out.arrays} == {"narrow.weights.net.0.weight", "narrow.weights.net.0.bias",
                                             "narrow.weights.net.2.weight", "narrow.weights.net.2.bias",
                                             "narrow.weights.net.4.weight", "narrow.weights.net.4.bias",
                                             "wide.weights.net.0.weight", "wide.weights.net.0.bias",
                                             "wide.weights.net.2.weight", "wide.weights.net.2.bias",
                                             "wide.weights.net.4.weight", "wide.weights.net.4.bias"}
    assert {s for _, s, _ in out.arrays} == {60}  # the comparison weights are not kept, the asked end is


def test_three_members_compare_pair_by_pair():
    out = train(dict(BASE, steps=20, grab_every=10, members={"a": {}, "b": {"lr": 0.05}, "c": {"lr": 0.1}}), device="cpu")
    names = {n for _, n, _ in out.metrics if "distance" in n or "cosine" in n}
    assert names == {f"{c}.{p}" for c in ("param_distance", "param_cosine", "output_distance") for p in ("a-b", "a-c", "b-c")}


@pytest.mark.parametrize("members, message", [
    ({"a": {}}, "two or more member names"),
    ({"a": {}, "b": {"steps": 10}}, "members.b sets steps, which the members share"),
    ({"a": {}, "b": {"grab_every": 5}}, "members.b sets grab_every"),
    ({"a": {}, "b": {"widht": 8}}, "member b: unknown key 'widht': did you mean 'width'"),
    ({"a": {}, "b": {"lr": -1}}, "member b: lr must be > 0"),
    ({"a b": {}, "c": {}}, "member name 'a b' must be a short identifier"),
    ({"a": [1], "b": {}}, "members.a must be a mapping"),
])
def test_a_bad_member_is_refused_at_submit_in_one_line(tmp_path, members, message):
    db = str(tmp_path / "jobs.db")
    with pytest.raises(UserError, match=message):
        submit(dict(sweep="pairs", base=BASE, members=members), db=db)
    assert not (tmp_path / "jobs.db").exists()


def test_a_paired_sweep_runs_through_the_queue_as_one_row_per_job(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    grid = dict(sweep="pairs", base=BASE, members={"small": {"batch_size": 8}, "big": {"batch_size": 64}},
                grid=dict(lr=[0.05, 0.1]))
    frame = runner.run(grid, db=db, devices="cpu", quiet=True)
    assert len(frame) == 2 and set(frame["status"]) == {"done"}
    assert frame["small.final_test_loss"].notna().all() and frame["final_param_distance"].gt(0).all()
    curves = runner.curves(db, sweep="pairs", metrics=["param_distance", "small.test_loss"])
    assert set(curves["metric"]) == {"param_distance", "small.test_loss"}
    shown = run_cli("show", "1", "--db", db)
    assert shown.returncode == 0 and "small.final_test_loss" in shown.stdout


@pytest.mark.gpu
@pytest.mark.parametrize("members", [{"a": {"model_seed": 1}, "b": {"model_seed": 2, "lr": 0.05}},
                                     {"small": {"batch_size": 8}, "big": {"batch_size": 64}}], ids=["fused", "one-by-one"])
def test_members_on_a_gpu_give_what_each_gives_alone(members):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    out = train(dict(BASE, members=members), device="cuda")
    assert out.status == "done" and out.summary["device"].startswith("cuda")
    for name, keys in members.items():
        alone = train(dict(BASE, **keys), device="cuda")
        assert out.summary[f"{name}.step_capture"] == "on"
        assert out.summary[f"{name}.final_test_loss"] == pytest.approx(alone.summary["final_test_loss"], rel=1e-4)
    assert [s for s, n, _ in out.metrics if n == "output_distance"] == [0, 20, 40, 60]
