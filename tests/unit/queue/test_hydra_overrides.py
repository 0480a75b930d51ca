"""Hydra's override spellings (issue 19 item 4), each beside runner's own form of the same change:
range(...) and choice(...) sweeps, +key (add), ~key (remove), quoting, -m/--multirun accepted and
ignored; what runner does not take is refused in one line that names what it does take."""
from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.queue.grid import parse_grid

GRID = {"sweep": "s", "base": {"batchfn": "gaussian_teacher", "model": "mlp", "d": 4, "steps": 10, "width": 8},
        "grid": {"lr": [0.1, 0.2]}}


def spec(*overrides: str):
    return parse_grid(GRID, "<dict>", overrides)


@pytest.mark.parametrize("hydra, runner_form", [
    ("seed=range(0,4)", "seed=0,1,2,3"),
    ("seed=range(3)", "seed=0,1,2"),
    ("lr=range(0,1,0.25)", "lr=0.0,0.25,0.5,0.75"),
    ("lr=range(0.1, 0.4, 0.1)", "lr=0.1,0.2,0.3"),
    ("width=choice(64,256)", "width=64,256"),
    ("width=choice(64)", "grid.width=[64]"),
    ("+noise=0.5", "noise=0.5"),
    ("++width=16", "width=16"),
    ("name='a,b'", "base.name=a,b"),
    ("act='relu','tanh'", "act=relu,tanh"),
])
def test_a_hydra_spelling_gives_what_runners_own_form_gives(hydra, runner_form):
    ours = spec(runner_form) if "=a,b" not in runner_form else None
    theirs = spec(hydra)
    if ours is None:  # a quoted value keeps its comma: one string, not an axis
        assert theirs.base["name"] == "a,b" and "name" not in theirs.axes
        return
    assert (theirs.base, theirs.axes) == (ours.base, ours.axes)


def test_tilde_removes_a_base_key_or_an_axis():
    assert "width" not in spec("~width").base
    assert "lr" not in spec("~lr").axes and "lr" not in spec("~lr").base
    with pytest.raises(UserError, match="'depth' is not in the grid's base or axes; nothing to remove"):
        spec("~depth")


@pytest.mark.parametrize("override, message", [
    ("width=interval(1,2)", "interval\\(...\\) is not supported; runner takes Hydra's range\\(start, stop, step\\) and choice"),
    ("seed=range(0,1,0)", "range's step must not be 0"),
    ("seed=range(a,b)", "range takes one to three numbers"),
    ("seed=range(0,10000000)", "range gives 10,000,000 values"),
    ("width=choice()", "choice\\(\\) needs at least one value"),
    ("+width=3", "'width' is in the grid already; \\+KEY adds a new key"),
])
def test_a_spelling_runner_does_not_take_is_refused_in_one_line(override, message):
    with pytest.raises(UserError, match=message) as err:
        spec(override)
    assert "\n" not in str(err.value)


def test_multirun_is_accepted_and_ignored(run_cli, tmp_path):
    (tmp_path / "g.yaml").write_text("sweep: s\nbase: {batchfn: gaussian_teacher, model: mlp, d: 4, batch_size: 8}\n"
                                     "grid: {lr: [0.1]}\n")
    done = run_cli("submit", "-m", "g.yaml", "seed=range(0,3)", "--dry-run", "--db", str(tmp_path / "jobs.db"))
    assert done.returncode == 0, done.stderr
    assert "3 jobs, all valid" in done.stdout
