"""Fuzzing the submit path before the database (issue 15 item 12): whatever a grid file, a grid dict or
a command-line override holds, validation either accepts it or ends in a UserError (one line, exit
code 2). Never another exception: that would be a traceback in a new user's terminal.

The inputs are built from the grid format's own vocabulary (top-level keys, option names, value
generators, changes entries) with arbitrary values in every slot, and from raw text for the YAML and
the override parsers."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import UserError
from runner.queue.grid import parse_grid
from runner.queue.grid_values import load_yaml
from runner.queue.submission import load_spec, plan_jobs
from runner.train.options import OPTIONS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPTION_NAMES = sorted(OPTIONS)
KEYS = st.sampled_from([*OPTION_NAMES, "d", "width", "depth", "noise", "at", "range", "linspace", "logspace",
                        "values", "gamma", "k", "monomials"]) | st.text(max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers(-3, 3) | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 1e308, 0.5])
           | st.text(max_size=8) | st.sampled_from(["mlp", "dln", "gaussian_teacher", "moons", "adam", "sgd", "end",
                                                    "os:system", "no_such_module:fn", "auto", "bf16", "cosine"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)
GENERATORS = st.one_of(
    st.fixed_dictionaries({"range": st.lists(SCALARS, max_size=4)}),
    st.fixed_dictionaries({"linspace": st.lists(SCALARS, max_size=4)}),
    st.fixed_dictionaries({"logspace": st.lists(SCALARS, max_size=4)}),
    st.lists(SCALARS, max_size=4),
)
BASE = {"batchfn": "gaussian_teacher", "model": "mlp", "d": 4, "batch_size": 8, "steps": 5, "width": 8}


def _accepted_or_user_error(make) -> None:
    try:
        plan_jobs(make())
    except UserError as exc:
        text = str(exc).strip()
        assert text and "\n" not in text, text
        assert exc.exit_code == 2


def _small_product(grid: dict) -> bool:
    """Keep generated grids to a handful of cells (a grid of billions of cells is issue 16's)."""
    total = 1
    for v in grid.values():
        if isinstance(v, dict) and any(k in v for k in ("range", "linspace", "logspace")):
            args = next(iter(v.values()))
            if isinstance(args, list) and any(isinstance(a, (int, float)) and not isinstance(a, bool)
                                              and (not math.isfinite(a) or abs(a) > 50) for a in args):
                return False
        total *= len(v) if isinstance(v, list) else 1
    return total <= 64


@FUZZ
@given(base=st.dictionaries(KEYS, VALUES, max_size=4), grid=st.dictionaries(KEYS, GENERATORS, max_size=2),
       changes=st.none() | st.lists(st.dictionaries(KEYS, VALUES, max_size=3), max_size=2))
def test_any_grid_dict_is_accepted_or_refused_in_one_line(base, grid, changes):
    if not _small_product(grid):
        return
    data = {"sweep": "fuzz", "base": {**BASE, **base, **({"changes": changes} if changes is not None else {})},
            "grid": grid}
    _accepted_or_user_error(lambda: load_spec(data))


@FUZZ
@given(st.dictionaries(st.sampled_from(["sweep", "description", "batchfn", "model", "grabs", "base", "grid", "zip",
                                        "exclude"]) | st.text(max_size=5), VALUES, max_size=5))
def test_any_top_level_layout_is_accepted_or_refused_in_one_line(data):
    _accepted_or_user_error(lambda: load_spec(data))


YAML_TEXT = st.text(alphabet=st.sampled_from(list("abdelmprstwy019 .-_:,[]{}&*!|>'\"#\n\t%@`?=~")), max_size=120)


@FUZZ
@given(YAML_TEXT)
def test_any_grid_file_text_is_accepted_or_refused_in_one_line(text):
    _accepted_or_user_error(lambda: parse_grid(load_yaml(text, "fuzz.yaml"), "fuzz.yaml", default_sweep="fuzz"))


OVERRIDE = st.text(alphabet=st.sampled_from(list("abdelrstw019.,=[]{}:'\" -_~+")), max_size=30)


@FUZZ
@given(st.lists(OVERRIDE | st.sampled_from(["lr=0.1,0.2", "base.steps=7", "base.changes=[{at: 2, lr: null}]",
                                            "seed='{range: [0, 3]}'", "base.=1", "=1", "grid.lr=", "lr=[]"]),
                max_size=3))
def test_any_override_is_accepted_or_refused_in_one_line(overrides):
    data = {"sweep": "fuzz", "base": dict(BASE), "grid": {"lr": [0.1, 0.2], "seed": [0, 1]}}
    _accepted_or_user_error(lambda: load_spec(data, overrides))


@pytest.mark.parametrize("changes", [[{"at": 2, "batch_size": None}], [{"at": 2, "lr": None}], [{"at": None}],
                                     [{"at": 2, "batch_size": float("nan")}], [{"at": 2, "lr": float("inf")}]])
def test_changes_with_null_or_non_finite_values_are_refused_in_one_line(changes):
    with pytest.raises(UserError):
        plan_jobs(load_spec({"sweep": "s", "base": {**BASE, "changes": changes}}))
