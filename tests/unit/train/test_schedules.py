"""Learning-rate schedules and scheduled changes of lr and batch size, resumable from checkpoints."""
from __future__ import annotations

import math

import pytest
from support.jobs import StopAfter, same_results

from runner.errors import UserError
from runner.train.loop import train
from runner.train.plan import check_config

BASE = dict(batchfn="gaussian_teacher", model="mlp", d=8, k=4, width=16, depth=1, batch_size=32, n_test=64,
            steps=400, lr=0.1, eval_every=50, seed=3)
OFFLINE = {**{k: v for k, v in BASE.items() if k != "k"}, "batchfn": "plugins_for_tests:linear_teacher",
           "online": False, "n_train": 96, "batch_size": 16}


def _lr_curve(out) -> dict[int, float]:
    steps, values = out.curve("lr")
    return dict(zip(steps.tolist(), values.tolist()))


def test_step_schedule_multiplies_the_lr_every_step_size_steps():
    out = train(dict(BASE, schedule="step", step_size=100, step_gamma=0.5), device="cpu")
    assert _lr_curve(out) == {0: 0.1, 50: 0.1, 100: 0.05, 150: 0.05, 200: 0.025, 250: 0.025, 300: 0.0125, 350: 0.0125}


def test_cosine_schedule_goes_from_lr_to_min_lr():
    out = train(dict(BASE, schedule="cosine", min_lr=0.01), device="cpu")
    lr = _lr_curve(out)
    assert lr[0] == pytest.approx(0.1)
    assert lr[200] == pytest.approx(0.01 + 0.09 * 0.5)
    assert lr[350] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * 350 / 400)))


def test_constant_schedule_records_no_lr_series_and_matches_the_default():
    a = train(BASE, device="cpu")
    b = train(dict(BASE, schedule="constant"), device="cpu")
    assert "lr" not in {n for _, n, _ in a.metrics}
    assert a.summary["final_test_loss"] == b.summary["final_test_loss"]


def test_an_lr_change_takes_effect_at_its_step_and_composes_with_the_schedule():
    out = train(dict(BASE, schedule="step", step_size=100, step_gamma=0.5, changes=[{"at": 250, "lr": 1.0}]), device="cpu")
    lr = _lr_curve(out)
    assert (lr[200], lr[250], lr[300]) == (0.025, 0.25, 0.125)


@pytest.mark.parametrize("cfg", [BASE, OFFLINE], ids=["online", "offline"])
def test_a_batch_size_switch_keeps_the_run_identical_before_it_and_changes_it_after(cfg):
    plain = train(cfg, device="cpu")
    switched = train(dict(cfg, changes=[{"at": 200, "batch_size": 48}]), device="cpu")
    before = [m for m in plain.metrics if m[0] < 200 and m[1] != "lr"]
    assert before == [m for m in switched.metrics if m[0] < 200]
    assert plain.summary["final_test_loss"] != switched.summary["final_test_loss"]
    assert switched.status == "done"


def test_an_online_switch_keeps_the_teacher_and_continues_the_data_stream():
    """The switched run equals one that draws batches of 48 from the same generator after step 200:
    compared through the test loss, which would jump if the teacher were redrawn."""
    switched = train(dict(BASE, changes=[{"at": 200, "batch_size": 48}], steps=600, lr=0.05), device="cpu")
    steps, test = switched.curve("test_loss")
    at = {s: v for s, v in zip(steps.tolist(), test.tolist())}
    assert at[250] < 1.5 * at[200]  # no jump: the same task goes on


@pytest.mark.parametrize("cfg, stop", [(BASE, 150), (BASE, 260), (OFFLINE, 150), (OFFLINE, 260)],
                         ids=["online-before", "online-after", "offline-before", "offline-after"])
def test_resume_across_a_batch_size_switch_and_schedule_is_exact(tmp_path, cfg, stop):
    cfg = dict(cfg, schedule="cosine", changes=[{"at": 200, "batch_size": 48}, {"at": 300, "lr": 0.05}])
    whole = train(cfg, device="cpu")
    path = tmp_path / "job.pt"
    assert train(cfg, device="cpu", should_stop=StopAfter(stop), checkpoint_path=path).status == "stopped"
    resumed = train(cfg, device="cpu", checkpoint_path=path)
    assert resumed.summary["resumed_from_step"] == stop
    same_results(whole, resumed)


@pytest.mark.parametrize("changes, message", [
    ([{"at": 100, "width": 3}], "cannot change width"),
    ([{"batch_size": 3}], "must be a mapping with at: STEP"),
    ([{"at": 0, "lr": 0.1}], "must be >= 1"),
    ([{"at": 10, "lr": -1}], "lr in changes\\[0\\] must be > 0"),
    ([{"at": 10}], "changes nothing"),
    ([{"at": 10, "lr": 0.1}, {"at": 10, "batch_size": 4}], "two changes at the same step"),
    ("at 10", "must be a list"),
])
def test_bad_changes_are_refused_at_submit(changes, message):
    with pytest.raises(UserError, match=message):
        check_config(dict(BASE, changes=changes))


def test_a_step_schedule_needs_its_step_size():
    with pytest.raises(UserError, match="schedule: step needs step_size"):
        check_config(dict(BASE, schedule="step"))


def test_snapshots_store_the_weights_at_the_named_steps_and_the_end():
    out = train(dict(BASE, steps=120, snapshots=[0, 50, "end"]), device="cpu")
    names = {(n, s) for n, s, _ in out.arrays}
    assert {s for n, s in names if n == "weights.net.0.weight"} == {0, 50, 120}
    first = next(a for n, s, a in out.arrays if n == "weights.net.0.weight" and s == 0)
    last = next(a for n, s, a in out.arrays if n == "weights.net.0.weight" and s == 120)
    assert first.shape == (16, 8) and not (first == last).all()
    with pytest.raises(UserError, match="snapshots takes steps"):
        check_config(dict(BASE, snapshots=["start"]))
