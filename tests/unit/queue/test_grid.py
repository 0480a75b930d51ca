"""Unit tests for runner.queue.grid: parsing, generators, zip/exclude, overrides, hashing, errors, speed."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.errors import UserError
from runner.hashing import config_hash
from runner.queue.grid import (
    GridSpec,
    apply_overrides,
    axis_names,
    expand,
    load_grid,
    parse_grid,
)

# The grid file example of docs/contracts.md: batch_size in base is overridden by the zip group.
EXAMPLE = """\
sweep: lr-width
batchfn: gaussian_teacher
model: mlp
grabs: [weight_norm, grad_norm]
base: {d: 200, steps: 10000, batch_size: 1024, online: true}
grid:
  lr: [0.001, 0.01, 0.1]
  width: [256, 1024, 4096]
  seed: {range: [0, 4]}
zip:
  - {n_train: [256, 1024], batch_size: [256, 1024]}
exclude:
  - {width: 4096, lr: 0.1}
"""


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def grid(data: dict, *overrides: str) -> GridSpec:
    return parse_grid(data, source="<t>", overrides=overrides, default_sweep="s")


def cells(spec: GridSpec, *keys: str) -> list[tuple]:
    return [tuple(config[k] for k in keys) for config in expand(spec)]


def error(fn, *args, source: str = "<t>", **kwargs) -> str:
    """The message of the UserError that fn raises; checks it is one line starting with the source."""
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{source}: "), message
    return message


def yaml_error(tmp_path: Path, text: str, *overrides: str) -> str:
    path = write(tmp_path, text)
    return error(load_grid, path, overrides, source=str(path))


# --- the file format --------------------------------------------------------------------------

def test_example_file(tmp_path):
    spec = load_grid(write(tmp_path, EXAMPLE))
    assert spec.sweep == "lr-width" and spec.source == str(tmp_path / "grid.yaml")
    assert spec.base == {"d": 200, "steps": 10000, "online": True, "batch_size": 1024, "batchfn": "gaussian_teacher",
                         "model": "mlp", "grabs": ["weight_norm", "grad_norm"]}
    assert spec.axes == {"lr": [0.001, 0.01, 0.1], "width": [256, 1024, 4096], "seed": [0, 1, 2, 3]}
    assert spec.zips == [{"n_train": [256, 1024], "batch_size": [256, 1024]}]
    assert axis_names(spec) == ["lr", "width", "seed", "n_train", "batch_size"]
    configs = expand(spec)
    assert len(configs) == 3 * 3 * 4 * 2 - 4 * 2
    assert configs[0] == {**spec.base, "lr": 0.001, "width": 256, "seed": 0, "n_train": 256, "batch_size": 256}
    assert configs[1]["n_train"] == configs[1]["batch_size"] == 1024
    assert not any(c["width"] == 4096 and c["lr"] == 0.1 for c in configs)


def test_an_axis_overrides_the_same_key_in_base(tmp_path):
    configs = expand(load_grid(write(tmp_path, EXAMPLE)))
    assert {c["batch_size"] for c in configs} == {256, 1024}
    assert all(c["batch_size"] == c["n_train"] for c in configs)


def test_product_order_last_axis_fastest():
    spec = grid({"grid": {"a": [1, 2], "b": ["x", "y"]}, "zip": [{"c": [0, 1], "d": [5, 6]}]})
    assert cells(spec, "a", "b", "c", "d") == [
        (1, "x", 0, 5), (1, "x", 1, 6), (1, "y", 0, 5), (1, "y", 1, 6),
        (2, "x", 0, 5), (2, "x", 1, 6), (2, "y", 0, 5), (2, "y", 1, 6)]


def test_two_zip_groups_multiply():
    spec = grid({"zip": [{"a": [1, 2], "b": [3, 4]}, {"c": [5, 6, 7], "d": [8, 9, 10]}]})
    assert cells(spec, "a", "b", "c", "d")[:4] == [(1, 3, 5, 8), (1, 3, 6, 9), (1, 3, 7, 10), (2, 4, 5, 8)]
    assert len(expand(spec)) == 6


def test_no_axes_gives_one_job():
    assert expand(grid({"base": {"lr": 0.1}})) == [{"lr": 0.1}]


def test_sweep_name_defaults_to_file_stem(tmp_path):
    assert load_grid(write(tmp_path, "grid: {lr: [1]}\n", "quickstart.yaml")).sweep == "quickstart"
    assert load_grid(write(tmp_path, "sweep:\ngrid: {lr: [1]}\n", "other.yml")).sweep == "other"
    assert parse_grid({"grid": {"lr": [1]}}, default_sweep="d").sweep == "d"
    assert parse_grid({"sweep": "x"}, default_sweep="d").sweep == "x"
    assert "sweep" in error(parse_grid, {"grid": {"lr": [1]}}, source="<dict>")


def test_axis_value_forms():
    spec = grid({"grid": {"lr": 0.1, "thresholds": [[0.1, 0.01], [0.5]], "opt": [{"name": "adam"}, {"name": "sgd"}]}})
    assert spec.axes == {"lr": [0.1], "thresholds": [[0.1, 0.01], [0.5]], "opt": [{"name": "adam"}, {"name": "sgd"}]}
    assert len(expand(spec)) == 4


def test_yaml_1e_minus_3_is_a_float_but_quoted_stays_a_string(tmp_path):
    spec = load_grid(write(tmp_path, "grid: {lr: [1e-3, 2E+2, 1.5e3, '1e-3', 1_000, 0.5]}\n"))
    assert spec.axes["lr"] == [0.001, 200.0, 1500.0, "1e-3", 1000, 0.5]
    assert [type(v) for v in spec.axes["lr"]] == [float, float, float, str, int, float]


@pytest.mark.parametrize("gen, expected", [
    ({"range": [4]}, [0, 1, 2, 3]),
    ({"range": [2, 5]}, [2, 3, 4]),
    ({"range": [0, 10, 3]}, [0, 3, 6, 9]),
    ({"range": [5, 0, -2]}, [5, 3, 1]),
    ({"range": [0, 1, 0.25]}, [0.0, 0.25, 0.5, 0.75]),
    ({"range": [0.1, 0.5, 0.1]}, [0.1, 0.2, 0.3, 0.4]),
    ({"range": [0, 1.1, 0.1]}, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
    ({"range": [1, 0, -0.5]}, [1.0, 0.5]),
    ({"linspace": [0, 1, 5]}, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ({"linspace": [0, 10, 6]}, [0, 2, 4, 6, 8, 10]),
    ({"linspace": [0.0, 10, 3]}, [0.0, 5.0, 10.0]),
    ({"linspace": [2, 3, 1]}, [2]),
    ({"linspace": [0, 0.3, 4]}, [0.0, 0.1, 0.2, 0.3]),
    ({"logspace": [-3, -1, 3]}, [0.001, 0.01, 0.1]),
    ({"logspace": [0, 3, 4]}, [1, 10, 100, 1000]),
    ({"logspace": [-15, -13, 3]}, [1e-15, 1e-14, 1e-13]),
    ({"logspace": [-4, -2, 5]}, [0.0001, 0.000316227766017, 0.001, 0.00316227766017, 0.01]),
])
def test_generators(gen, expected):
    values = grid({"grid": {"x": gen}}).axes["x"]
    assert values == expected
    assert [type(v) for v in values] == [type(v) for v in expected]


@settings(max_examples=100, deadline=None)
@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-7, 7).filter(bool))
def test_int_range_is_python_range(start, stop, step):
    expected = list(range(start, stop, step))
    data = {"grid": {"x": {"range": [start, stop, step]}}}
    if expected:
        assert grid(data).axes["x"] == expected
    else:
        assert "no values" in error(grid, data)


@settings(max_examples=100, deadline=None)
@given(st.integers(-100, 100), st.integers(1, 40), st.sampled_from([0.1, 0.25, 0.01, 0.3, -0.1, -0.05]))
def test_float_range_steps_without_drift(start10, count, step):
    start = start10 / 10
    stop = round(start + count * step, 12)
    values = grid({"grid": {"x": {"range": [start, stop, step]}}}).axes["x"]
    assert values == [round(start + i * step, 12) for i in range(count)]


def test_zip_pairs_vary_together(tmp_path):
    spec = load_grid(write(tmp_path, "zip:\n  - {n_train: [256, 1024], batch_size: [64, 128]}\n"))
    assert cells(spec, "n_train", "batch_size") == [(256, 64), (1024, 128)]


def test_zip_rows_must_differ_but_columns_may_repeat():
    spec = grid({"zip": [{"n_train": [256, 1024], "batch_size": [128, 128]}]})
    assert cells(spec, "n_train", "batch_size") == [(256, 128), (1024, 128)]
    assert "appears twice" in error(grid, {"grid": {"x": [1]}}, "x=2,2")


def test_zip_members_may_be_generators():
    spec = grid({"zip": [{"a": {"range": [3]}, "b": {"linspace": [0, 1, 3]}}]})
    assert cells(spec, "a", "b") == [(0, 0.0), (1, 0.5), (2, 1.0)]


def test_exclude_scalar_and_any_of():
    data = {"grid": {"lr": [0.1, 0.01], "width": [1, 2, 3]}, "exclude": [{"lr": 0.1, "width": [2, 3]}]}
    assert cells(grid(data), "lr", "width") == [(0.1, 1), (0.01, 1), (0.01, 2), (0.01, 3)]
    data["exclude"] = [{"width": 1}, {"lr": 0.01, "width": 3}]
    assert cells(grid(data), "lr", "width") == [(0.1, 2), (0.1, 3), (0.01, 2)]


def test_exclude_on_zip_member_and_list_values():
    data = {"grid": {"t": [[0.1, 0.01], [0.5]]}, "zip": [{"a": [1, 2], "b": [3, 4]}],
            "exclude": [{"t": [[0.5]], "b": 4}]}  # a list value means any-of: wrap a list value in a list
    assert cells(grid(data), "t", "a") == [([0.1, 0.01], 1), ([0.1, 0.01], 2), ([0.5], 1)]


def test_exclude_matching_is_type_aware():
    data = {"grid": {"flag": [True, 1, 1.0, "1"]}, "exclude": [{"flag": True}]}
    assert cells(grid(data), "flag") == [(1,), (1.0,), ("1",)]
    data["exclude"] = [{"flag": 1}]  # 1 matches 1 and 1.0, never True or "1"
    assert cells(grid(data), "flag") == [(True,), ("1",)]


def test_every_cell_excluded():
    msg = error(grid, {"grid": {"a": [1, 2], "b": [3, 4]}, "exclude": [{"a": [1, 2]}]})
    assert "exclude removes all 4 combinations" in msg


def test_shorthands_and_batchfn_as_axis(tmp_path):
    spec = load_grid(write(tmp_path, "grabs: weight_norm\nmodel: mlp\ngrid: {batchfn: [moons, circles]}\n"))
    assert spec.base == {"model": "mlp", "grabs": ["weight_norm"]}
    assert [(c["batchfn"], c["model"], c["grabs"]) for c in expand(spec)] == [
        ("moons", "mlp", ["weight_norm"]), ("circles", "mlp", ["weight_norm"])]
    assert grid({"base": {"grabs": "a"}}).base == {"grabs": ["a"]}


def test_configs_share_no_mutable_values():
    spec = grid({"base": {"grabs": ["a"], "opt": {"betas": [0.9]}}, "grid": {"t": [[1], [2]], "x": [1, 2]}})
    configs = expand(spec)
    configs[0]["grabs"].append("b")
    configs[0]["opt"]["betas"].append(0.5)
    configs[0]["t"].append(9)
    assert configs[1]["grabs"] == ["a"] and configs[1]["opt"] == {"betas": [0.9]} and configs[1]["t"] == [1]
    assert spec.base == {"grabs": ["a"], "opt": {"betas": [0.9]}} and spec.axes["t"] == [[1], [2]]


def test_merge_keys_and_anchors_are_not_duplicates(tmp_path):
    text = "base:\n  opt: &o {name: adam, lr: 1}\n  opt2: {<<: *o, lr: 2}\n"
    assert load_grid(write(tmp_path, text)).base["opt2"] == {"name": "adam", "lr": 2}


# --- overrides --------------------------------------------------------------------------------

BASE = {"sweep": "s", "base": {"d": 10, "steps": 100, "opt": {"beta": 0.9, "eps": 1e-8}},
        "grid": {"lr": [0.1, 0.01], "width": [8]}, "zip": [{"a": [1, 2], "b": [3, 4]}]}


def test_comma_list_replaces_a_grid_axis_in_place():
    spec = grid(BASE, "lr=0.5,0.05,1e-3")
    assert list(spec.axes) == ["lr", "width"] and spec.axes["lr"] == [0.5, 0.05, 0.001]


def test_comma_list_turns_a_base_or_new_key_into_an_axis():
    spec = grid(BASE, "d=1,2", "seed=0,1,2")
    assert spec.axes["d"] == [1, 2] and spec.axes["seed"] == [0, 1, 2] and "d" not in spec.base
    assert axis_names(spec) == ["lr", "width", "d", "seed", "a", "b"]
    assert len(expand(spec)) == 2 * 1 * 2 * 3 * 2


def test_single_value_pins_an_axis_or_sets_base():
    spec = grid(BASE, "lr=0.3", "steps=7", "new=true", "name=hello")
    assert spec.axes["lr"] == [0.3]
    assert spec.base["steps"] == 7 and spec.base["new"] is True and spec.base["name"] == "hello"


def test_dotted_base_and_grid_keys():
    spec = grid(BASE, "base.steps=2000", "base.opt.beta=0.5", "base.new.deep.x=1", "grid.width=1,2", "grid.d=3")
    assert spec.base["steps"] == 2000 and spec.base["opt"] == {"beta": 0.5, "eps": 1e-8}
    assert spec.base["new"] == {"deep": {"x": 1}}
    assert spec.axes["width"] == [1, 2] and spec.axes["d"] == [3] and "d" not in spec.base
    assert BASE["base"]["opt"] == {"beta": 0.9, "eps": 1e-8}  # input untouched


def test_sweep_and_shorthand_overrides():
    spec = grid(BASE, "sweep=2024", "batchfn=my.mod:fn", "model=mlp", "grabs=[a, b]")
    assert spec.sweep == "2024"
    assert spec.base["batchfn"] == "my.mod:fn" and spec.base["model"] == "mlp" and spec.base["grabs"] == ["a", "b"]
    assert grid(BASE, "grabs=a").base["grabs"] == ["a"]
    assert grid(BASE, "batchfn=moons,circles").axes["batchfn"] == ["moons", "circles"]


def test_override_value_parsing():
    spec = grid(BASE, "x=0.01", "y=true", "z=1e-3", "n=null", "s=abc", "t=-2E2", "h=[64, 64]", "o={k: 1}")
    assert {k: spec.base[k] for k in "xyznstho"} == {
        "x": 0.01, "y": True, "z": 0.001, "n": None, "s": "abc", "t": -200.0, "h": [64, 64], "o": {"k": 1}}
    assert type(spec.base["z"]) is float


def test_generator_and_list_overrides_make_axes():
    spec = grid(BASE, "seed={range: [0, 4]}", "lr=[0.1, 0.2, 0.3]", "t=[[0.1, 0.01], [0.5]]", "grid.u=[1, 2]")
    assert spec.axes["seed"] == [0, 1, 2, 3] and spec.axes["lr"] == [0.1, 0.2, 0.3]
    assert spec.base["t"] == [[0.1, 0.01], [0.5]]  # t is no axis: a list is one value
    assert grid(BASE, "t=1,2", "t=[[0.1, 0.01], [0.5]]").axes["t"] == [[0.1, 0.01], [0.5]]
    assert spec.axes["u"] == [1, 2]
    assert grid(BASE, "d={range: [3]}").axes["d"] == [0, 1, 2]


def test_overrides_apply_in_order_and_return_a_new_spec(tmp_path):
    spec = grid(BASE)
    new = apply_overrides(spec, ["lr=1,2", "lr=3", "steps=5"])
    assert new.axes["lr"] == [3] and new.base["steps"] == 5
    assert spec.axes["lr"] == [0.1, 0.01] and spec.base["steps"] == 100
    loaded = load_grid(write(tmp_path, EXAMPLE), ["lr=0.5", "base.steps=2000"])
    assert loaded.axes["lr"] == [0.5] and loaded.base["steps"] == 2000


def test_override_can_supply_the_missing_sweep_name():
    assert parse_grid({"grid": {"lr": [1]}}, overrides=["sweep=named"]).sweep == "named"


@pytest.mark.parametrize("override, words", [
    ("lr", ["'lr'", "KEY=VALUE"]),
    ("=1", ["'=1'", "KEY=VALUE"]),
    ("lr=", ["'lr='", "no value"]),
    ("lr=1,,2", ["empty item"]),
    ("l r=1", ["not a key"]),
    ("a=5", ["'a'", "zip group 0", "not supported", "edit the file"]),
    ("b=5,6", ["'b'", "zip group 0", "edit the file"]),
    ("base.a=5", ["'a'", "zip group 0"]),
    ("grid.b=1,2", ["'b'", "zip group 0"]),
    ("zip.a=1", ["zip", "edit the file"]),
    ("exclude=1", ["exclude", "edit the file"]),
    ("base=1", ["base.KEY=VALUE"]),
    ("foo.bar=1", ["base.foo.bar"]),
    ("grid.x.y=1", ["base.x.y"]),
    ("base.steps=1,2", ["base.steps takes one value", "steps=v1,v2"]),
    ("base.lr=1", ["'lr' is a grid axis", "lr=VALUE"]),
    ("base.d.x=1", ["base.d is 10, not a mapping"]),
    ("lr=[1, 2", ["override 'lr=[1, 2'", "malformed YAML"]),
    ("lr=.nan", ["grid.lr[0]", "NaN"]),
    ("steps=.inf", ["base.steps", "infinity"]),
    ("lr=[]", ["grid.lr has no values"]),
    ("lr={a: 1}", ["a mapping is not an axis"]),
    ("sweep=", ["sweep must be a non-empty string"]),
    ("grabs=3", ["grabs must be a list"]),
    ("seed={range: [0, 0]}", ["no values"]),
])
def test_override_errors(override, words):
    msg = error(grid, BASE, override)
    for word in words:
        assert word in msg, msg


# --- structural errors ------------------------------------------------------------------------

def test_file_not_found(tmp_path):
    path = tmp_path / "missing.yaml"
    assert "file not found" in error(load_grid, path, source=str(path))


@pytest.mark.parametrize("text, words", [
    ("grid: [1, 2\n", ["malformed YAML", "line 2"]),
    ("grid:\n  lr: [1]\n bad: 2\n", ["malformed YAML at line 3, column 2"]),
    ("", ["empty"]),
    ("# only a comment\n", ["empty"]),
    ("- 1\n- 2\n", ["top level must be a mapping", "not a list"]),
    ("gird: {lr: [1]}\n", ["'gird'", "did you mean 'grid'"]),
    ("bsae: {lr: 1}\n", ["did you mean 'base'"]),
    ("learning_rate: 0.1\n", ["'learning_rate'", "hyperparameters go under base: or grid:"]),
    ("grid:\n  lr: [1]\n  lr: [2]\n", ["duplicate key 'lr'", "line 3", "first on line 2"]),
    ("base: {d: 1, d: 2}\n", ["duplicate key 'd'"]),
    ("sweep: a\nsweep: b\n", ["duplicate key 'sweep'"]),
    ("base:\n  opt:\n    lr: 1\n    lr: 2\n", ["duplicate key 'lr'", "line 4"]),
    ("grid: {a: [1]}\nzip: [{a: [1], b: [2]}]\n", ["'a'", "grid:", "zip group 0"]),
    ("zip: [{a: [1], b: [2]}, {a: [3], c: [4]}]\n", ["'a'", "zip group 0", "zip group 1"]),
    ("model: mlp\nbase: {model: cnn}\n", ["'model'", "top level", "base:"]),
    ("grid: {lr: []}\n", ["grid.lr has no values"]),
    ("grid: {lr: }\n", ["grid.lr is empty"]),
    ("zip: [{a: []}]\n", ["zip[0].a has no values"]),
    ("zip: [{n_train: [1, 2], batch_size: [1, 2, 3]}]\n", ["unequal", "n_train has 2", "batch_size has 3"]),
    ("grid: {x: {range: []}}\n", ["grid.x", "range takes a list of 1, 2 or 3 numbers"]),
    ("grid: {x: {range: [1, 2, 3, 4]}}\n", ["range takes"]),
    ("grid: {x: {range: 4}}\n", ["range takes", "{range: [stop]}"]),
    ("grid: {x: {range: [a]}}\n", ["range takes"]),
    ("grid: {x: {range: [true]}}\n", ["range takes"]),
    ("grid: {x: {range: [0, 4, 0]}}\n", ["step must not be 0"]),
    ("grid: {x: {range: [4, 0]}}\n", ["gives no values"]),
    ("grid: {x: {range: [0, 10000000]}}\n", ["more than 1,000,000"]),
    ("grid: {x: {linspace: [0, 1]}}\n", ["linspace takes a list of 3 numbers"]),
    ("grid: {x: {linspace: [0, 1, 0]}}\n", ["num must be a whole number"]),
    ("grid: {x: {linspace: [0, 1, 2.5]}}\n", ["num must be a whole number"]),
    ("grid: {x: {logspace: [0, 1, 0]}}\n", ["logspace num must be"]),
    ("grid: {x: {logspace: [0, 400, 2]}}\n", ["overflows"]),
    ("grid: {x: {rnage: [4]}}\n", ["a mapping is not an axis", "did you mean 'range'"]),
    ("grid: {x: {a: 1, b: 2}}\n", ["a mapping is not an axis", "put them in a list"]),
    ("grid: {a: [1, 2]}\nexclude: [{a: [1, 2]}]\n", ["exclude removes all 2 combinations"]),
    ("grid: {width: [1]}\nexclude: [{widht: 1}]\n", ["'widht'", "did you mean 'width'"]),
    ("grid: {width: [1]}\nexclude: [{zzz: 1}]\n", ["'zzz'", "the axes are: width"]),
    ("base: {d: 1}\ngrid: {w: [1]}\nexclude: [{d: 1}]\n", ["'d'", "in base:"]),
    ("grid: {w: [1]}\nexclude: [{}]\n", ["exclude[0] is empty"]),
    ("grid: {lr: [0.1, 0.01, 0.1]}\n", ["lr: 0.1 appears twice", "duplicate jobs"]),
    ("zip: [{a: [1, 2, 1], b: [3, 4, 3]}]\n", ["a/b: {'a': 1, 'b': 3} appears twice"]),
    ("zip: [{}]\n", ["zip[0] is empty"]),
    ("base: {start: 2024-01-01}\n", ["base.start", "date", "JSON"]),
    ("grid: {x: [1, .nan]}\n", ["grid.x[1]", "NaN"]),
    ("base: {x: .inf}\n", ["base.x", "infinity"]),
    ("base: {x: {y: [1, -.inf]}}\n", ["base.x.y[1]"]),
    ("base: {b: !!binary aGVsbG8=}\n", ["base.b", "bytes"]),
    ("base: {s: !!set {a, b}}\n", ["base.s", "set"]),
    ("base: {1: 2}\n", ["base: key 1 is not a string"]),
    ("base: {opt: {1.5: 2}}\n", ["base.opt has key 1.5"]),
    ("base: {x: !!python/object:os.system {}}\n", ["malformed YAML", "python/object"]),
    ("sweep: ''\n", ["sweep must be a non-empty string"]),
    ("sweep: 2024\n", ["sweep must be a non-empty string", "2024"]),
    ("sweep: [a]\n", ["sweep must be a non-empty string"]),
    ("base: [1, 2]\n", ["base: must be a mapping", "not a list"]),
    ("grid: [lr, width]\n", ["grid: must be a mapping", "not a list"]),
    ("zip: {a: [1], b: [2]}\n", ["zip: must be a list of mappings", "not a mapping"]),
    ("zip: [[1, 2]]\n", ["zip[0]: must be a mapping"]),
    ("exclude: {a: 1}\n", ["exclude: must be a list of mappings"]),
    ("exclude: [1]\n", ["exclude[0]: must be a mapping", "not an integer"]),
    ("grabs: 3\n", ["grabs must be a list"]),
    ("description: [1]\n", ["description must be a string"]),
])
def test_structural_errors(tmp_path, text, words):
    msg = yaml_error(tmp_path, text)
    for word in words:
        assert word in msg, msg


def test_dict_source_prefix():
    msg = error(parse_grid, {"grid": {"lr": []}}, source="<dict>", default_sweep="s")
    assert msg == "<dict>: grid.lr has no values (give at least one, e.g. lr: [1])"


def test_null_sections_count_as_empty(tmp_path):
    spec = load_grid(write(tmp_path, "base:\ngrid: {lr: [1]}\nzip:\nexclude:\ndescription: hi\n"))
    assert spec.base == {} and spec.zips == [] and spec.exclude == []


def test_expand_validates_hand_built_specs():
    spec = GridSpec("s", {}, {"lr": [1]}, [], [{"nope": 1}], "<mine>")
    assert "'nope'" in error(expand, spec, source="<mine>")


def test_grid_too_large():
    data = {"grid": {"a": {"range": [1000]}, "b": {"range": [1000]}, "c": [1, 2]}}
    assert "2,000,000 combinations" in error(grid, data)


# --- speed ------------------------------------------------------------------------------------

def test_100k_cells_expand_and_hash_fast():
    spec = grid({"batchfn": "gaussian_teacher", "model": "mlp", "grabs": ["weight_norm", "grad_norm"],
                 "base": {"d": 200, "steps": 10000, "online": True},
                 "grid": {"lr": {"logspace": [-4, -1, 25]}, "width": {"range": [1, 41]}, "seed": {"range": [50]}},
                 "zip": [{"n_train": [256, 1024], "batch_size": [256, 1024]}],
                 "exclude": [{"width": 1, "seed": [0, 1]}]})
    start = time.perf_counter()
    configs = expand(spec)
    middle = time.perf_counter()
    hashes = {config_hash(config) for config in configs}
    end = time.perf_counter()
    assert len(configs) == 25 * 40 * 50 * 2 - 25 * 2 * 2 == len(hashes)
    print(f"\n{len(configs):,} cells: expand {middle - start:.3f} s, hash {end - middle:.3f} s")
    assert end - start < 5


def test_integer_keys_of_nested_mappings_are_stored_as_strings():
    spec = parse_grid({"sweep": "s", "grid": {"monomials": [[{0: 1}], [{0: 2}, {1: 1, 2: 1}]]}}, "<dict>")
    configs = expand(spec)
    assert [c["monomials"] for c in configs] == [[{"0": 1}], [{"0": 2}, {"1": 1, "2": 1}]]
