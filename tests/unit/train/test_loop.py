"""The trainloop on its own: exact optimum, thresholds as a step-by-step reference, divergence."""
from __future__ import annotations

import math

import numpy as np
import plugins_for_tests
import pytest
import torch

from batchfns import gaussian_teacher
from runner.errors import UserError
from runner.train.loop import CHUNK, derive_seeds, train
from runner.train.models import MLP
from runner.train.thresholds import LossTracker

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=12, k=4, width=32, depth=1, batch_size=64, n_test=256)


def test_offline_full_batch_gd_reaches_least_squares():
    d, n = 8, 64
    cfg = dict(batchfn="plugins_for_tests:linear_teacher", model="mlp", depth=0, d=d, noise=0.5, online=False,
               n_train=n, steps=3000, lr=0.2, n_test=0, seed=3)
    out = train(cfg, device="cpu")
    gen = torch.Generator().manual_seed(derive_seeds(3)["data"])
    X, y = plugins_for_tests.linear_teacher(d, n, 0.5, gen=gen, device=torch.device("cpu"))(0)
    A = torch.cat([X, torch.ones(n, 1)], 1).double()
    sol = torch.linalg.lstsq(A, y.double()).solution
    ls_loss = float(((A @ sol - y.double()) ** 2).mean())
    assert out.status == "done"
    assert ls_loss > 0.05  # noisy: the optimum is not zero
    assert out.summary["final_train_loss"] == pytest.approx(ls_loss, rel=1e-4)


def _reference_losses(cfg: dict) -> list[float]:
    """A plain step-by-step PyTorch loop over the same data, init and optimizer."""
    seeds = derive_seeds(cfg["seed"])
    gen = torch.Generator().manual_seed(seeds["data"])
    batch = gaussian_teacher(cfg["d"], cfg["batch_size"], cfg["k"], gen=gen, device=torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["model"])
        model = MLP(cfg["d"], 1, width=cfg["width"], depth=cfg["depth"])
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    losses = []
    for step in range(cfg["steps"]):
        X, y = batch(step)
        loss = torch.nn.functional.mse_loss(model(X), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def test_thresholds_match_a_step_by_step_reference():
    thresholds = [0.6, 0.3, 0.2, 0.15]
    cfg = dict(BASE, steps=700, lr=0.05, momentum=0.9, seed=1, thresholds=thresholds, ema=0.95, eval_every=50)
    assert cfg["steps"] > 2 * CHUNK  # crossings must be found across chunk boundaries
    out = train(cfg, device="cpu")
    ref = _reference_losses(cfg)
    expected, s = {}, None
    for step, loss in enumerate(ref):
        s = loss if s is None else 0.95 * s + 0.05 * loss
        for t in thresholds:
            if t not in expected and s < t:
                expected[t] = step
    assert len(expected) >= 3, "the reference should cross most thresholds"
    for t in thresholds:
        assert out.summary[f"step_at_{t:g}"] == expected.get(t)
    steps, values = out.curve("batch_loss")
    np.testing.assert_allclose(values, [ref[s] for s in steps], rtol=1e-5)


def test_stop_on_thresholds_stops_at_the_crossing_step():
    cfg = dict(BASE, steps=5000, lr=0.05, momentum=0.9, thresholds=[0.3], ema=0.9, stop_on_thresholds=True)
    out = train(cfg, device="cpu")
    crossed = out.summary["step_at_0.3"]
    assert crossed is not None and out.status == "done"
    assert out.summary["steps_run"] == crossed < 5000


def test_huge_learning_rate_ends_diverged():
    out = train(dict(BASE, steps=400, lr=1e4), device="cpu")
    assert out.status == "diverged"
    assert out.summary["diverged_at"] is not None and out.summary["diverged_at"] < 400
    assert "non-finite" in out.reason
    assert all(math.isfinite(v) for _, _, v in out.metrics)


def test_jobs_that_differ_only_in_lr_share_data_and_init():
    a = train(dict(BASE, steps=0, lr=0.1, grabs=["weight_norm"]), device="cpu")
    b = train(dict(BASE, steps=0, lr=0.001, grabs=["weight_norm"]), device="cpu")
    assert a.curve("test_loss")[1][0] == b.curve("test_loss")[1][0]
    (steps_a, norms_a), (steps_b, norms_b) = a.curve("weight_norm.total"), b.curve("weight_norm.total")
    assert steps_a.tolist() == steps_b.tolist() and norms_a == pytest.approx(norms_b)
    c = train(dict(BASE, steps=0, seed=1, grabs=["weight_norm"]), device="cpu")
    assert c.curve("test_loss")[1][0] != a.curve("test_loss")[1][0]


def test_offline_minibatches_and_optimizers():
    for optimizer in ("sgd", "adam", "adamw"):
        out = train(dict(BASE, online=False, n_train=200, batch_size=50, steps=120, lr=0.01, optimizer=optimizer), device="cpu")
        steps, test = out.curve("test_loss")
        assert out.status == "done" and steps[-1] == 120
        assert test[-1] < test[0]


def test_cross_entropy_reports_accuracy():
    cfg = dict(batchfn="plugins_for_tests:blobs", model="mlp", d=4, classes=3, batch_size=32, steps=200, lr=0.05,
               loss="cross_entropy")
    out = train(cfg, device="cpu")
    assert out.summary["final_test_acc"] > 0.9
    assert out.curve("test_acc")[1][0] < out.summary["final_test_acc"]


def test_grabs_are_recorded_at_their_cadence():
    out = train(dict(BASE, steps=300, grab_every=100, grabs=["weight_norm", "grad_norm"]), device="cpu")
    steps, _ = out.curve("weight_norm.total")
    assert list(steps) == [0, 100, 200, 300]
    gsteps, gvals = out.curve("grad_norm")
    assert list(gsteps) == [100, 200, 300] and (gvals > 0).all()  # no gradient exists before step 1
    norms = dict(zip(*out.curve("weight_norm.net.0.weight")))
    assert norms[0] > 0


def test_loss_tracker_chunks_equal_one_pass():
    rng = np.random.default_rng(0)
    losses = np.exp(-np.linspace(0, 5, 1000)) + 0.05 * rng.random(1000)
    whole = LossTracker([0.5, 0.1, 0.02], 0.9)
    whole.update(losses, 0)
    chunked = LossTracker([0.5, 0.1, 0.02], 0.9)
    for start in range(0, 1000, 37):
        chunked.update(losses[start:start + 37], start)
    assert whole.crossed == chunked.crossed and whole.smoothed == pytest.approx(chunked.smoothed)
    bad = LossTracker([], 0.0)
    bad.update(np.array([1.0, np.inf, np.nan]), 10)
    assert bad.nonfinite_at == 11


def test_draw_ahead_draws_m_steps_of_rows_in_one_call_and_hands_them_out_in_order():
    """draw_ahead M: the batch function is made for M x batch_size rows and called every M steps;
    each step gets the next batch_size of them (other data than draw_ahead 1, the same every run)."""
    import torch

    from runner.train.data import JobData
    from runner.train.loop import derive_seeds
    from runner.train.plan import plan_job

    cfg = dict(batchfn="gaussian_teacher", model="mlp", d=3, k=2, batch_size=4, n_test=0, steps=10, draw_ahead=5)
    seeds = derive_seeds(0)
    data = JobData(plan_job(cfg), torch.device("cpu"), seeds)
    steps = [data.next_batch(step) for step in range(10)]
    once = JobData(plan_job(dict(cfg, batch_size=20, draw_ahead=1)), torch.device("cpu"), seeds)
    for block in range(2):  # each block: one call of 20 rows, handed out 4 at a time
        X, y = once.next_batch(block * 5)
        assert torch.equal(torch.cat([steps[block * 5 + i][0] for i in range(5)]), X)
        assert torch.equal(torch.cat([steps[block * 5 + i][1] for i in range(5)]), y)
    finals = [train(dict(cfg, n_test=16, draw_ahead=m), device="cpu").summary["final_test_loss"]
                    for m in (5, 5, 1)]
    assert finals[0] == finals[1] != finals[2]  # reproducible; another realisation than one step at a time


def test_runner_train_takes_function_objects_even_ones_no_worker_could_import():
    """As runner.submit does; a local function (or one defined in a notebook) is fine in-process."""

    def local_teacher(d: int, batch_size: int, *, gen, device):
        def batch(step: int):
            X = torch.randn(batch_size, d, generator=gen, device=device)
            return X, X[:, :1].clone()

        return batch

    config = {"batchfn": local_teacher, "model": "mlp", "d": 3, "batch_size": 8, "steps": 20, "n_test": 16}
    first, again = train(config, device="cpu"), train(dict(config), device="cpu")
    assert first.status == "done" and first.summary["final_test_loss"] == again.summary["final_test_loss"]
    by_import = train(dict(config, batchfn=gaussian_teacher, d=3), device="cpu")  # an importable one: its path
    assert by_import.status == "done"


def test_runner_train_runs_on_one_thread_as_sweep_workers_do_and_restores_the_callers_count():
    """Issue 15 item 15: tiny networks train several times faster on one intra-op thread (the README's
    example: 0.8 s against 2.7-5.7 s on two here); the caller's setting comes back after the call."""
    seen: list[int] = []

    def counting_teacher(d: int, batch_size: int, *, gen, device):
        def batch(step: int):
            seen.append(torch.get_num_threads())
            X = torch.randn(batch_size, d, generator=gen, device=device)
            return X, X[:, :1].clone()

        return batch

    config = {"batchfn": counting_teacher, "model": "mlp", "d": 3, "batch_size": 8, "steps": 5, "n_test": 16}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert train(config, device="cpu").status == "done" and set(seen) == {1}
        assert torch.get_num_threads() == 2
        seen.clear()
        train(config, device="cpu", threads=3)
        assert set(seen) == {3} and torch.get_num_threads() == 2
        seen.clear()
        train(config, device="cpu", threads=None)  # as a worker calls it: its own count stays
        assert set(seen) == {2}
        with pytest.raises(UserError, match="threads must be a whole number of at least 1"):
            train(config, device="cpu", threads=0)
    finally:
        torch.set_num_threads(before)
