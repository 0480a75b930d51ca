"""Fused groups on the CPU: K jobs of one fusion key trained as one batched model give what each gives
alone: the same metric points, statuses, threshold steps and final values, within a tolerance that
batched kernels need (measured here: worst relative difference about 1e-6 for values above 1e-7;
asserted: 1e-5, or 1e-7 absolute)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runner
from runner.train.fused import train_group

pytestmark = pytest.mark.usefixtures("one_thread")
RTOL, ATOL = 1e-5, 1e-7
RTOL_GPU = 1e-4  # batched kernels on an H200 against the captured step alone: worst measured 3.5e-5 (eager fused)  # ATOL: a loss trained down to 1e-9 differs in float32 noise, not in what it means

MOONS = dict(batchfn="moons", model="mlp", batch_size=32, width=16, depth=2, steps=120, n_test=128, eval_every=20,
             loss="cross_entropy")
TEACHER = dict(batchfn="gaussian_teacher", model="mlp", d=6, k=3, batch_size=32, width=16, depth=2, steps=120,
               n_test=128, eval_every=20)


def members(base: dict, **per_member: list) -> list[dict]:
    """Configs of one key: base, each with the i-th value of every per-member list."""
    n = len(next(iter(per_member.values())))
    return [dict(base, **{k: v[i] for k, v in per_member.items()}) for i in range(n)]


SCENARIOS = {
    "sgd-seeds-lrs-momentum": members(MOONS, seed=[0, 1, 2, 3], lr=[0.05, 0.1, 0.05, 0.2], momentum=[0.0, 0.9, 0.5, 0.0],
                                      weight_decay=[0.0, 1e-3, 0.0, 1e-2]),
    "nesterov": members(dict(TEACHER, nesterov=True), seed=[0, 1, 2], lr=[0.02, 0.05, 0.01], momentum=[0.9, 0.5, 0.8]),
    "adam": members(dict(TEACHER, optimizer="adam"), seed=[0, 1, 2], lr=[1e-3, 3e-3, 1e-2], betas=[[0.9, 0.999],
                    [0.8, 0.99], [0.95, 0.9]], eps=[1e-8, 1e-6, 1e-8], weight_decay=[0.0, 1e-2, 0.0]),
    "adamw": members(dict(TEACHER, optimizer="adamw"), seed=[3, 4], lr=[1e-3, 5e-3], weight_decay=[1e-2, 0.1]),
    "offline-minibatches-and-changes": members(dict(TEACHER, online=False, n_train=96, changes=[{"at": 40, "batch_size": 48},
                                                                                              {"at": 80, "lr": 0.01}]),
                                               seed=[0, 1, 2], lr=[0.05, 0.02, 0.1]),
    "offline-full-batch-step-schedule": members(dict(TEACHER, online=False, n_train=64, batch_size=None,
                                                     schedule="step", step_size=30),
                                                seed=[0, 1], lr=[0.1, 0.05], step_gamma=[0.5, 0.9]),
    "online-draw-ahead-and-a-batch-size-change": members(dict(MOONS, draw_ahead=8, changes=[{"at": 45, "batch_size": 16}]),
                                                         seed=[0, 1, 2], lr=[0.05, 0.1, 0.2], noise=[0.1, 0.2, 0.1]),
    "cosine": members(dict(MOONS, schedule="cosine"), seed=[0, 1], lr=[0.1, 0.2], min_lr=[0.0, 0.01]),
    "grabs-and-snapshots": members(dict(TEACHER, grabs=["weight_norm", "grad_norm", "dist_from_init"], grab_every=40,
                                        snapshots=[0, 60, "end"]), seed=[0, 1], lr=[0.05, 0.1]),
    "xor-bce-centered": members(dict(batchfn="xor", model="mlp", batch_size=32, width=16, depth=1, steps=100,
                                     n_test=64, eval_every=25, loss="bce", center=True), seed=[0, 1], lr=[0.1, 0.3]),
    # twins: members of one seed share their data and initial weights (drawn and built once for them)
    "twins-online-per-step": members(MOONS, seed=[0, 0, 1, 1], lr=[0.05, 0.1, 0.05, 0.2], momentum=[0.0, 0.9, 0.0, 0.0]),
    "twins-draw-ahead-and-a-batch-size-change": members(dict(MOONS, draw_ahead=8, changes=[{"at": 45, "batch_size": 16}]),
                                                        seed=[0, 0, 1], lr=[0.05, 0.1, 0.2]),
    "twins-offline-minibatches": members(dict(TEACHER, online=False, n_train=96), seed=[4, 4, 4, 5],
                                         lr=[0.02, 0.05, 0.1, 0.05]),
    "deep-linear": members(dict(batchfn="linear_teacher", model="dln", d=8, width=16, depth=3, batch_size=32,
                                steps=100, n_test=64, eval_every=25, gamma=0.5), seed=[0, 1, 2], lr=[0.02, 0.05, 0.1]),
}


def assert_same(alone: runner.TrainResult, fused: runner.TrainResult, rtol: float = RTOL) -> float:
    """Equal statuses, steps and threshold crossings; the same metric points and arrays within RTOL.
    Returns the worst relative difference seen."""
    assert fused.status == alone.status and fused.reason == alone.reason
    skip = {"wall_s", "setup_s", "fused", "step_capture"}
    numbers = {k for k, v in alone.summary.items() if isinstance(v, float)}
    assert {k: v for k, v in fused.summary.items() if k not in skip | numbers} == \
        {k: v for k, v in alone.summary.items() if k not in skip | numbers}
    worst = 0.0
    for key in numbers - skip:
        assert fused.summary[key] == pytest.approx(alone.summary[key], rel=rtol, abs=ATOL), key
    a, f = {(s, n): v for s, n, v in alone.metrics}, {(s, n): v for s, n, v in fused.metrics}
    assert a.keys() == f.keys()
    for key, value in a.items():
        assert f[key] == pytest.approx(value, rel=rtol, abs=ATOL), key
        worst = max(worst, abs(f[key] - value) / abs(value) if abs(value) > ATOL else 0.0)
    assert [(n, s) for n, s, _ in alone.arrays] == [(n, s) for n, s, _ in fused.arrays]
    for (_, _, x), (_, _, y) in zip(alone.arrays, fused.arrays):
        np.testing.assert_allclose(y, x, rtol=rtol, atol=1e-6)
    return worst


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_fused_group_gives_what_each_job_gives_alone(name, device, show):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    configs = SCENARIOS[name]
    alone = [runner.train(c, device=device) for c in configs]
    fused = train_group(configs, device=device)
    assert [r.summary["fused"] for r in fused] == [len(configs)] * len(configs)
    if device == "cuda":  # the whole fused step as one graph
        assert {r.summary["step_capture"] for r in fused} == {"on"}, fused[0].summary["step_capture"]
    rtol = RTOL if device == "cpu" else RTOL_GPU
    worst = max(assert_same(a, f, rtol) for a, f in zip(alone, fused))
    show(f"fused {name} on {device}: {len(configs)} members, worst relative difference {worst:.1e}")


def test_members_end_on_their_own_steps_and_the_others_go_on():
    """One member diverges, one stops on its thresholds, one trains to the end: each as alone."""
    base = dict(TEACHER, steps=600, thresholds=[0.5], snapshots=[600, "end"])  # 600: only for who gets there
    configs = [dict(base, seed=0, lr=1e3), dict(base, seed=1, lr=0.05, stop_on_thresholds=True),
               dict(base, seed=2, lr=0.05)]
    alone = [runner.train(c, device="cpu") for c in configs]
    fused = train_group(configs, device="cpu")
    assert [r.status for r in fused] == ["diverged", "done", "done"]
    assert fused[1].summary["steps_run"] < 600 == fused[2].summary["steps_run"]
    for a, f in zip(alone, fused):
        assert_same(a, f)


def test_twins_end_on_their_own_steps_and_their_twins_train_on_as_alone():
    """Members of one seed share their data: one that stops on its thresholds (or diverges) ends at its
    own step, its final batch drawn as alone, while its twins train on the stream they would see alone."""
    base = dict(TEACHER, steps=400, thresholds=[0.5], at_thresholds=["eval"])
    configs = [dict(base, seed=7, lr=0.08, stop_on_thresholds=True), dict(base, seed=7, lr=0.02),
               dict(base, seed=7, lr=1e3), dict(base, seed=8, lr=0.05, stop_on_thresholds=True)]
    alone = [runner.train(c, device="cpu") for c in configs]
    fused = train_group(configs, device="cpu")
    assert [r.status for r in fused] == ["done", "done", "diverged", "done"]
    assert fused[0].summary["steps_run"] < 400 == fused[1].summary["steps_run"]
    for a, f in zip(alone, fused):
        assert_same(a, f)


def test_twins_share_one_data_and_one_initial_model_but_stay_their_own_modules(monkeypatch):
    """Members of one seed share their data and weights; a member of another seed gets its weights
    redrawn on the first one's module: one model built for the whole group."""
    from runner.train import models
    from runner.train.fused import _Group
    from runner.train.optim import precision
    from runner.train.plan import plan_job

    plans = [plan_job(c) for c in members(dict(MOONS, steps=10), seed=[0, 0, 1, 0], lr=[0.05, 0.1, 0.05, 0.2])]
    built = []  # (counted once planned: planning reads the constructor's signature)
    monkeypatch.setattr(models.MLP, "__init__", lambda self, *a, _init=models.MLP.__init__, **k: (
        built.append(1), _init(self, *a, **k))[-1])
    device = torch.device("cpu")
    with precision("fp32", device) as autocast:
        group = _Group(plans, device, autocast, lambda: False, 0.0, saved=[None] * 4, paths=[None] * 4)
    assert len(built) == 1
    data = [m.data for m in group.members]
    assert data[0] is data[1] is data[3] and data[2] is not data[0] and len(group.data.unique) == 2
    first, twin, other = group.stacked.member(0), group.stacked.member(1), group.stacked.member(2)
    assert len({id(first), id(twin), id(other)}) == 3  # a grab holding one member's module never sees another's weights
    assert all(torch.equal(p, group.stacked.params[n][2]) for n, p in other.named_parameters())
    for name, p in group.stacked.params.items():
        assert torch.equal(p[0], p[1]) and torch.equal(p[0], p[3]) and not torch.equal(p[0], p[2]), name


def test_what_cannot_be_fused_runs_alone_and_says_why():
    mup = members(dict(TEACHER, parametrization="mup", base_width=8), seed=[0, 1], lr=[0.05, 0.1])
    dropout = members(dict(TEACHER, dropout=0.1), seed=[0, 1], lr=[0.05, 0.1])
    for configs, why in ((mup, "muP"), (dropout, "dropout")):
        results = train_group(configs, device="cpu")
        assert all(r.summary["fused"].startswith("off: ") and why in r.summary["fused"] for r in results)
        for a, f in zip([runner.train(c, device="cpu") for c in configs], results):
            assert f.summary["final_test_loss"] == a.summary["final_test_loss"]  # run alone: bit for bit
    lone = train_group([dict(TEACHER, steps=10)], device="cpu")
    assert lone[0].summary["fused"] == "off: no other job of its key to fuse with"


def test_a_group_of_several_keys_is_refused():
    with pytest.raises(ValueError, match="one fusion key"):
        train_group([dict(TEACHER, width=16), dict(TEACHER, width=32)], device="cpu")


def test_a_stop_request_ends_every_member_stopped():
    calls = iter(range(10**6))
    results = train_group(members(TEACHER, seed=[0, 1], lr=[0.05, 0.1]), device="cpu",
                          should_stop=lambda: next(calls) >= 50)
    assert [r.status for r in results] == ["stopped", "stopped"] and results[0].summary["steps_run"] == 51


def test_the_memory_estimate_scales_with_the_budget_and_the_model():
    from runner.train.fused_memory import members_that_fit

    small, wide = [dict(TEACHER, seed=i) for i in range(64)], [dict(TEACHER, width=512, seed=i) for i in range(64)]
    assert members_that_fit(small, "cpu", 64e9) == 64 and members_that_fit(small, "cpu", 1) == 1  # capped; at least 1
    per_member = 1e6 / members_that_fit(small, "cpu", 1e6)  # the bytes one member needs, as estimated
    assert members_that_fit(small, "cpu", 10 * per_member) in range(8, 11)
    assert members_that_fit(wide, "cpu", 100e6) < members_that_fit(small, "cpu", 100e6) / 4  # wider: fewer fit
