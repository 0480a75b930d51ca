"""Loss landscapes of finished jobs (issue 18 items 3 and 4), through real queues: the path between two
solutions starts and ends at the jobs' own final losses, alignment lowers the barrier, a convex
problem has none, a trajectory stores the weights it was asked to and its PCA and surface come back,
and the two `runner plot` commands write their figures or fail in one line."""
from __future__ import annotations

import numpy as np
import pytest

import runner
from runner.errors import UserError
from runner.queue.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

MOONS = dict(sweep="paths", batchfn="moons", model="mlp",
             base=dict(loss="cross_entropy", online=False, n_train=256, batch_size=64, n_test=256, width=16, depth=2,
                       steps=300, lr=0.1, momentum=0.9, eval_every=100, data_seed=0, snapshots=["end"]),
             grid=dict(model_seed=[1, 2]))


@pytest.fixture(scope="module")
def moons_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("paths") / "jobs.db")
    frame = runner.run(MOONS, db=db, devices="cpu", quiet=True)
    return db, frame.set_index("job_id")


def test_a_path_starts_and_ends_at_the_jobs_own_final_losses_and_alignment_lowers_its_barrier(moons_db):
    db, frame = moons_db
    plain = runner.connectivity(db, 1, 2, points=11)
    aligned = runner.connectivity(db, 1, 2, points=11, align="permutation")
    assert plain["data"] == "train" and len(plain["loss"]) == len(plain["accuracy"]) == 11
    for path in (plain, aligned):  # one data_seed: job 1's training set is job 2's too
        assert path["loss"][0] == pytest.approx(frame.loc[1, "final_train_loss"], rel=1e-5)
        assert path["loss"][-1] == pytest.approx(frame.loc[2, "final_train_loss"], rel=1e-5)
        assert path["barrier"] == pytest.approx(path["loss"].max() - (path["loss"][0] + path["loss"][-1]) / 2)
    assert plain["barrier"] > 0.01
    assert aligned["barrier"] < plain["barrier"] / 2
    test = runner.connectivity(db, 1, 2, points=3, data="test")
    assert test["loss"][0] == pytest.approx(frame.loc[1, "final_test_loss"], rel=1e-5)
    curve = runner.connectivity(db, 1, 2, points=11, path="bezier", bezier_steps=200)
    assert curve["loss"][0] == plain["loss"][0] and curve["loss"][-1] == plain["loss"][-1]
    assert curve["loss"][5] < plain["loss"][5]


def test_two_solutions_of_a_convex_problem_have_no_barrier(tmp_path):
    db = str(tmp_path / "jobs.db")
    grid = dict(sweep="convex", batchfn="linear_teacher", model="dln",
                base=dict(d=40, depth=1, online=False, n_train=16, n_test=64, steps=1500, lr=0.05, eval_every=500,
                          data_seed=0, snapshots=["end"]),  # d > n: a plane of exact solutions, reached from two inits
                grid=dict(model_seed=[0, 1]))
    frame = runner.run(grid, db=db, devices="cpu", quiet=True)
    assert frame["final_train_loss"].max() < 1e-9
    path = runner.connectivity(db, 1, 2, points=21)
    assert path["barrier"] == pytest.approx(0.0, abs=1e-9)
    assert "accuracy" not in path


def test_a_trajectory_stores_its_weights_every_n_steps_and_comes_back_as_pca_and_a_surface(tmp_path):
    grid = dict(MOONS, sweep="trajectory", base=dict(MOONS["base"], steps=110, trajectory_every=25, snapshots=[]))
    for fuse in ("1", "auto"):  # alone and fused store the same steps
        db = str(tmp_path / f"fuse-{fuse}.db")
        frame = runner.run(grid, db=db, devices="cpu", quiet=True, fuse=fuse)
        assert ("fused" in frame and bool(frame["fused"].notna().all())) == (fuse == "auto")
        with Store(db) as store:
            assert [store.weight_steps(job) for job in (1, 2)] == [[0, 25, 50, 75, 100, 110]] * 2
    found = runner.trajectory(db, 1, points=5)
    assert found["steps"] == [0, 25, 50, 75, 100, 110]
    ratio = found["explained_variance_ratio"]
    assert len(ratio) == 2 and 0 < ratio[1] <= ratio[0] and ratio.sum() <= 1 + 1e-12
    assert found["coords"].shape == (6, 2)
    np.testing.assert_allclose(found["coords"][-1], 0.0, atol=1e-12)
    assert found["surface"].shape == (5, 5) and np.isfinite(found["surface"]).all()
    one = runner.loss_slice(db, 1, points=5, span=0.5)
    assert one["loss"].shape == (5,) and one["loss"][2] == pytest.approx(one["loss"].min(), rel=0.5)
    two = runner.loss_slice(db, 1, points=3, dims=2)
    assert two["loss"].shape == (3, 3) and two["loss"][1, 1] == pytest.approx(one["loss"][2], rel=1e-6)


def test_what_cannot_be_measured_says_why(moons_db, tmp_path):
    db, _ = moons_db
    with pytest.raises(UserError, match="a trajectory needs 3 or more: give its grid `trajectory_every: N`"):
        runner.trajectory(db, 1)
    with pytest.raises(UserError, match="no job 9"):
        runner.connectivity(db, 1, 9)
    with pytest.raises(UserError, match="stored weights at steps \\[300\\], not at 5"):
        runner.connectivity(db, 1, 2, step=5)
    with pytest.raises(UserError, match="align must be none or permutation"):
        runner.connectivity(db, 1, 2, align="yes")
    other = str(tmp_path / "other.db")
    runner.run(dict(MOONS, grid=dict(width=[8, 16])), db=other, devices="cpu", quiet=True)
    with pytest.raises(UserError, match="different architectures"):
        runner.connectivity(other, 1, 2)


def test_runner_plot_landscape_and_connectivity_write_figures_or_fail_in_one_line(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    grid = dict(MOONS, base=dict(MOONS["base"], steps=60, trajectory_every=20))
    runner.run(grid, db=db, devices="cpu", quiet=True)
    done = run_cli("plot", "landscape", "1", "--db", db, "--points", "5", "--slices", "1")
    assert done.returncode == 0, done.stderr
    assert "landscape_job1.png" in done.stdout and "of the trajectory's variance; 4 steps" in done.stdout
    assert (tmp_path / "landscape_job1.png").stat().st_size > 10_000
    done = run_cli("plot", "connectivity", "1", "2", "--db", db, "--points", "5", "-o", "paths.png")
    assert done.returncode == 0, done.stderr
    assert "linear: barrier" in done.stdout and "linear, permutation-aligned: barrier" in done.stdout
    assert (tmp_path / "paths.png").stat().st_size > 10_000
    failed = run_cli("plot", "connectivity", "1", "2", "--db", db, "--step", "7")
    assert failed.returncode == 2
    assert failed.stderr.strip() == "error: job 1 stored weights at steps [0, 20, 40, 60], not at 7"
