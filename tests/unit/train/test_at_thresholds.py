"""Measuring at threshold crossings (issue 18 item 6), with known answers: a job that stops on its
thresholds ends at the step the last one is crossed with exactly the weights, losses and grabs a job
of that many steps has; `at_thresholds` measures at each crossing what a job ending there measures at
its end, and changes nothing else; a fused group does what each member does alone. The crossings
fall in later chunks than the first (a host read every 256 steps), so the chunk is replayed."""
from __future__ import annotations

import pytest

import runner
from runner.errors import UserError
from runner.train.fused import train_group
from runner.train.loop import CHUNK

from .test_fused import assert_same

pytestmark = pytest.mark.usefixtures("one_thread")

SLOW = dict(batchfn="gaussian_teacher", model="mlp", d=8, k=3, batch_size=32, width=16, depth=2, steps=900,
            n_test=128, eval_every=200, lr=0.01, ema=0.9, grabs=["weight_norm", "grad_norm"], grab_every=300)
CASES = {
    "online": {},
    "draw-ahead": dict(draw_ahead=7),
    "offline-minibatches": dict(online=False, n_train=200, batch_size=48),
    "offline-full-batch": dict(online=False, n_train=200, batch_size=None),
    "batch-size-change": dict(changes=[{"at": 300, "batch_size": 16}]),
    "adam-step-schedule": dict(optimizer="adam", lr=0.002, schedule="step", step_size=200, step_gamma=0.5),
}


def _thresholds(config: dict, device: str = "cpu") -> list[float]:
    """Three thresholds the smoothed loss crosses after the first chunk, read off a plain run."""
    curve = runner.train(dict(config, grabs=[], thresholds=[]), device=device).curve("batch_loss")[1]
    late = sorted(curve[3:])  # batch_loss is kept at the evaluation cadence: 200, 400, 600, 800
    return [float(v) * 1.3 for v in late[-3:]][::-1]


def _short(config: dict, steps: int) -> runner.TrainResult:
    return runner.train(dict(config, steps=steps, thresholds=[], stop_on_thresholds=False, at_thresholds=[]),
                        device="cpu")


@pytest.mark.parametrize("case", sorted(CASES))
def test_stopping_on_thresholds_ends_at_the_crossing_with_that_steps_weights(case):
    config = dict(SLOW, **CASES[case])
    config["thresholds"] = _thresholds(config)
    out = runner.train(dict(config, stop_on_thresholds=True, snapshots=["end"]), device="cpu")
    crossed = [v for k, v in out.summary.items() if k.startswith("step_at_")]
    assert all(s is not None for s in crossed) and max(crossed) > CHUNK
    end = max(crossed)
    assert out.status == "done" and out.summary["steps_run"] == end
    short = _short(dict(config, snapshots=["end"]), end)
    for key in ("final_test_loss", "final_train_loss", "final_weight_norm.total", "final_grad_norm"):
        assert out.summary[key] == short.summary[key], key  # the same weights, batch and gradients: bit for bit
    assert [(n, s) for n, s, _ in out.arrays if n.startswith("weights.")] == [
        (n, s) for n, s, _ in short.arrays if n.startswith("weights.")]
    assert max(s for s, _, _ in out.metrics) == end


@pytest.mark.parametrize("case", ["online", "offline-minibatches", "batch-size-change"])
def test_at_thresholds_measures_each_crossing_as_a_job_ending_there_would_and_changes_nothing_else(case):
    config = dict(SLOW, **CASES[case])
    config["thresholds"] = _thresholds(config)
    plain = runner.train(config, device="cpu")
    measured = runner.train(dict(config, at_thresholds=["eval", "grabs"]), device="cpu")
    assert measured.summary["final_test_loss"] == plain.summary["final_test_loss"]
    assert measured.curve("batch_loss")[1].tolist() == plain.curve("batch_loss")[1].tolist()
    crossings = sorted({v for k, v in plain.summary.items() if k.startswith("step_at_")})
    assert len(crossings) >= 2 and crossings[-1] > CHUNK
    for step in crossings:
        short = _short(config, step)
        at = {n: v for s, n, v in measured.metrics if s == step}
        assert at["test_loss"] == short.summary["final_test_loss"]
        assert at["weight_norm.total"] == short.summary["final_weight_norm.total"]
        assert at["grad_norm"] == short.summary["final_grad_norm"]
    extra = {s for s, n, _ in measured.metrics if n == "test_loss"} - {s for s, n, _ in plain.metrics if n == "test_loss"}
    assert extra == set(crossings)


def test_a_fused_group_stops_and_measures_at_each_members_crossings_as_alone():
    config = dict(SLOW, **CASES["online"])
    config["thresholds"] = _thresholds(config)
    configs = [dict(config, seed=0, stop_on_thresholds=True), dict(config, seed=0, lr=0.008, at_thresholds=["eval", "grabs"]),
               dict(config, seed=1, lr=0.012, stop_on_thresholds=True, at_thresholds=["eval"]), dict(config, seed=2)]
    alone = [runner.train(c, device="cpu") for c in configs]
    fused = train_group(configs, device="cpu")
    assert all(f.summary["fused"] == 4 for f in fused)
    assert fused[0].summary["steps_run"] < 900 and fused[1].summary["steps_run"] == 900
    for a, f in zip(alone, fused):
        assert_same(a, f)


def test_a_stop_before_a_later_divergence_in_the_same_chunk_ends_done():
    config = dict(SLOW, steps=200, thresholds=[1e9], stop_on_thresholds=True,
                  changes=[{"at": 100, "lr": 1e6}])  # crossed at step 0; blows up from step 100
    out = runner.train(config, device="cpu")
    assert out.status == "done" and out.summary["steps_run"] == 0
    assert train_group([config, dict(config, seed=1)], device="cpu")[0].status == "done"


def test_a_bad_at_thresholds_is_refused_in_one_line():
    for bad in ("losses", ["eval", "eval"], [1]):
        with pytest.raises(UserError, match="at_thresholds takes a list of eval and grabs"):
            runner.train(dict(SLOW, at_thresholds=bad), device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["online", "draw-ahead", "offline-minibatches"])
def test_on_a_gpu_a_captured_run_goes_back_to_its_crossings_alone_and_fused(case):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from .test_fused import RTOL_GPU

    config = dict(SLOW, **CASES[case])
    config["thresholds"] = _thresholds(config, "cuda")  # (the GPU's generators draw other data than the CPU's)
    stopped = runner.train(dict(config, stop_on_thresholds=True), device="cuda")
    assert stopped.summary["step_capture"] == "on"
    end = stopped.summary["steps_run"]
    assert end == max(v for k, v in stopped.summary.items() if k.startswith("step_at_")) > CHUNK
    short = runner.train(dict(config, steps=end, thresholds=[], stop_on_thresholds=False), device="cuda")
    assert stopped.summary["final_test_loss"] == pytest.approx(short.summary["final_test_loss"], rel=1e-5)
    configs = [dict(config, seed=0, stop_on_thresholds=True), dict(config, seed=1, at_thresholds=["eval", "grabs"]),
               dict(config, seed=2, lr=0.012, stop_on_thresholds=True)]
    alone = [runner.train(c, device="cuda") for c in configs]
    fused = train_group(configs, device="cuda")
    assert {f.summary["step_capture"] for f in fused} == {"on"} and fused[0].summary["fused"] == 3
    for a, f in zip(alone, fused):
        assert_same(a, f, RTOL_GPU)
