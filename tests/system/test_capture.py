"""Step capture (CUDA graphs): a captured run computes what the eager run computes.

Each GPU case trains the same config twice, `capture: true` (the default) and `capture: false`,
and compares every recorded metric point. Cases cover the batch drawn inside the graph (online
built-ins), copied into it (offline minibatches), the full training set, optimizers with lazy
state, re-capture after an lr decay and a batch-size switch, bf16, dropout, muP, grabs that read
gradients between replays, and functions that read values back to the host (capture must fall
back, not fail). On the CPU the option is validated and the summary says why steps ran eagerly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from runner.errors import UserError
from runner.train.capture import StepGraph, capture_blocker
from runner.train.plan import plan_job

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=16, width=64, depth=2, batch_size=128, n_test=256,
            steps=300, eval_every=25, lr=0.05, seed=3)

CASES = {
    "online-sgd": {},
    "online-momentum-nesterov-wd": dict(momentum=0.9, nesterov=True, weight_decay=1e-3),
    "online-adam": dict(optimizer="adam", lr=1e-3),
    "offline-minibatch": dict(online=False, n_train=512, batch_size=64),
    "offline-full-batch": dict(online=False, n_train=256, batch_size=None),
    "step-schedule-and-batch-switch": dict(schedule="step", step_size=70, step_gamma=0.5,
                                           changes=[{"at": 150, "batch_size": 32}, {"at": 200, "lr": 0.02}]),
    "bf16": dict(precision="bf16"),
    "tf32": dict(precision="tf32"),
    "dropout": dict(dropout=0.2),
    "mup": dict(parametrization="mup", base_width=16, optimizer="adam", lr=1e-3),
    "grabs-between-replays": dict(grabs=["grad_norm", "weight_norm", "hessian_top"], grab_every=50, hessian_k=1),
    "dln-linear-teacher": dict(batchfn="linear_teacher", model="dln", width=32, depth=3, gamma=0.5, lr=0.01,
                               changes=[{"at": 100, "batch_size": 512}]),
    "classification": dict(batchfn="moons", d=None, loss="cross_entropy", noise=0.1),
    "syncing-batch-function": dict(batchfn="plugins_for_tests:syncing_teacher"),
    "syncing-model": dict(model="plugins_for_tests:SyncingMLP", depth=None, width=16),
}

# Metrics must agree to this relative tolerance: bitwise equality is what the H200 runs gave.

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _config(case: str, capture: bool) -> dict:
    config = {**BASE, **CASES[case], "capture": capture}
    return {k: v for k, v in config.items() if v is not None}


def _series(result: runner.TrainResult) -> dict[tuple[int, str], float]:
    return {(s, n): v for s, n, v in result.metrics}


@gpu
@needs_cuda
@pytest.mark.parametrize("case", list(CASES))
def test_captured_run_equals_eager_run(case, show):
    eager = runner.train(_config(case, False), device="cuda")
    captured = runner.train(_config(case, True), device="cuda")
    assert eager.status == captured.status == "done", (eager.reason, captured.reason)
    a, b = _series(eager), _series(captured)
    assert a.keys() == b.keys()
    keys = sorted(a)
    x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    bitwise = bool(np.array_equal(x, y))
    worst = float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-12)))
    show(f"{case}: {captured.summary['step_capture']}; {len(keys)} points, bitwise equal {bitwise}, "
         f"max relative difference {worst:.2e}; final test loss {eager.summary['final_test_loss']:.6g} eager, "
         f"{captured.summary['final_test_loss']:.6g} captured")
    np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)
    assert eager.summary["step_capture"] == "off: capture: false in the config"
    if case == "syncing-model":  # the reason is the first error, not CUDA's "previous error during capture"
        assert captured.summary["step_capture"].startswith("off: capture failed"), captured.summary
        assert "previous error" not in captured.summary["step_capture"], captured.summary
    else:
        assert captured.summary["step_capture"] == "on", captured.summary


@gpu
@needs_cuda
def test_capture_fallbacks_and_recaptures(show):
    """Which steps replay: warm-up steps eager, re-capture after each change, batch drawn in the graph
    where the batch function allows it and copied in where it does not."""
    plan = plan_job(_config("step-schedule-and-batch-switch", True))
    counts = {}
    original = StepGraph._capture

    def counting(self, step, batch):
        counts.setdefault("in_graph" if batch is None else "copied", []).append(step)
        return original(self, step, batch)

    StepGraph._capture = counting
    try:
        runner.train(plan, device="cuda")
        runner.train(_config("offline-minibatch", True), device="cuda")
    finally:
        StepGraph._capture = original
    show(f"captures at steps: {counts}")
    # first run: warm-up 2 steps, then re-captures after lr decays at 70, 140, 210, 280 and the switch at 150/200
    assert counts["in_graph"][:1] == [2] and len(counts["in_graph"]) == 7
    assert counts["copied"] == [2]  # offline minibatches: the sampler runs eagerly, copied into the graph


def test_capture_option_and_reasons_on_cpu():
    out = runner.train(_config("online-sgd", True) | {"steps": 20}, device="cpu")
    assert out.summary["step_capture"] == "off: device cpu (graphs need CUDA)"
    out = runner.train(_config("online-sgd", False) | {"steps": 20}, device="cpu")
    assert out.summary["step_capture"] == "off: capture: false in the config"
    o = plan_job(_config("online-sgd", True) | {"schedule": "cosine"}).options
    assert capture_blocker(o, torch.device("cuda")) == "the cosine schedule changes the lr every step"
    with pytest.raises(UserError, match="capture"):
        plan_job(_config("online-sgd", True) | {"capture": "yes"})
