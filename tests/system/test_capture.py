"""Step capture (CUDA graphs): a captured run computes what the eager run computes.

Each GPU case trains the same config twice, `capture: true` (the default) and `capture: false`,
and compares every recorded metric point. Cases cover the batch drawn inside the graph (online
built-ins), copied into it (offline minibatches), the full training set, optimizers with lazy
state, re-capture after an lr decay and a batch-size switch, bf16, dropout, muP, grabs that read
gradients between replays, and functions that read values back to the host (capture must fall
back, not fail). On the CPU the option is validated and the summary says why steps ran eagerly.
"""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

import runner
from runner.errors import UserError
from runner.train.capture import StepGraph, capture_blocker
from runner.train.fused import train_group
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


class _TrackedGraph(torch.cuda.CUDAGraph if torch.cuda.is_available() else object):
    """A CUDAGraph that remembers its instances (weakly), to see which outlive their job."""
    made: list[weakref.ref] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _TrackedGraph.made.append(weakref.ref(self))


@gpu
@needs_cuda
def test_a_failed_capture_leaves_the_process_clean_for_the_captures_after_it(monkeypatch, show):
    """Issue 15 item 2. In a long-lived worker, a job whose capture failed used to spoil later captures: its
    dead graph sat in a reference cycle until the garbage collector freed it in the middle of another job's
    capture (CUDA forbids that: "operation not permitted when stream is capturing"), and the thread went on
    issuing work on the capture stream. Then: which steps replay, with the collector running all the time:
    warm-up steps eager, a re-capture after each change, the batch drawn in the graph where the batch
    function allows it and copied in where it does not."""
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _TrackedGraph)
    _TrackedGraph.made.clear()
    failed = runner.train(_config("syncing-model", True) | {"steps": 20}, device="cuda")
    assert failed.summary["step_capture"].startswith("off: capture failed"), failed.summary
    assert torch.cuda.current_stream() == torch.cuda.default_stream(), "the capture stream stayed current"
    collecting = gc.isenabled()
    gc.disable()  # what is alive now without a collection: a failed graph must not wait for one
    try:
        assert _TrackedGraph.made and all(ref() is None for ref in _TrackedGraph.made), "a failed graph outlived its job"
    finally:
        if collecting:
            gc.enable()

    plan = plan_job(_config("step-schedule-and-batch-switch", True))
    counts = {}
    original = StepGraph._capture

    def counting(self, step, batch):
        counts.setdefault("in_graph" if batch is None else "copied", []).append(step)
        return original(self, step, batch)

    monkeypatch.setattr(StepGraph, "_capture", counting)
    thresholds = gc.get_threshold()
    gc.set_threshold(1, 1, 1)  # collect at nearly every allocation: during captures too, where it must not
    try:
        recaptured = runner.train(plan, device="cuda")
        minibatches = runner.train(_config("offline-minibatch", True), device="cuda")
        fused = train_group([_config("online-sgd", True) | {"seed": s, "steps": 60} for s in (0, 1)], device="cuda")
    finally:
        gc.set_threshold(*thresholds)
    show(f"after a failed capture, with the collector at every allocation: captures at steps {counts}; "
         f"fused: {fused[0].summary['step_capture']}")
    assert recaptured.summary["step_capture"] == minibatches.summary["step_capture"] == "on"
    assert [r.summary["step_capture"] for r in fused] == ["on", "on"]
    # first run: warm-up 2 steps, then re-captures after lr decays at 70, 140, 210, 280 and the switch at 150/200
    assert counts["in_graph"] == [2, 71, 141, 151, 201, 211, 281]
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
