"""Submit-time validation of job configs and plug-in references."""
from __future__ import annotations

import pytest

from runner.errors import UserError
from runner.registry import resolve, to_reference
from runner.train.plan import check_config, plan_job

OK = dict(batchfn="gaussian_teacher", model="mlp", d=8, batch_size=16, lr=0.1, width=32)


def _error(config: dict) -> str:
    with pytest.raises(UserError) as info:
        check_config(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_valid_config_passes_and_coerces():
    out = check_config(dict(OK, lr=1, momentum="0", thresholds=0.5, betas=[0, 0.9]))
    assert out["lr"] == 1.0 and isinstance(out["lr"], float)
    assert out["thresholds"] == [0.5]


def test_yaml_style_exponent_strings_become_floats():
    assert check_config(dict(OK, lr="1e-3"))["lr"] == 0.001


@pytest.mark.parametrize("key, near", [("wdith", "width"), ("learning_rate", None), ("batchsize", "batch_size"), ("momentun", "momentum")])
def test_unknown_key_names_the_closest(key, near):
    message = _error(dict(OK, **{key: 1}))
    assert repr(key) in message
    if near:
        assert f"did you mean {near!r}" in message


def test_missing_required_argument():
    config = dict(OK)
    del config["d"]
    assert "missing 'd'" in _error(config)


@pytest.mark.parametrize("key, value, words", [
    ("width", 3.5, "width"), ("width", "wide", "width"), ("steps", -5, "steps must be >= 0"), ("lr", 0, "lr must be > 0"),
    ("optimizer", "lbfgs", "optimizer must be one of"), ("online", "yes", "true or false"), ("lr", [0.1], "lr must be a number"),
    ("seed", True, "integer"),
])
def test_wrong_types_and_values(key, value, words):
    assert words in _error(dict(OK, **{key: value}))


def test_online_needs_batch_size_offline_needs_n_train():
    config = dict(OK)
    del config["batch_size"]
    assert "batch_size" in _error(config)
    assert "n_train" in _error(dict(OK, online=False))


def test_injected_names_cannot_be_set():
    assert "filled in by runner" in _error(dict(OK, gen=1))


def test_grab_parameters_are_known_keys():
    plan = plan_job(dict(OK, grabs=["weight_norm", "plugins_for_tests:scaled_norm"], scale=2))
    assert [g.ref for g, _ in plan.grabs] == ["weight_norm", "plugins_for_tests:scaled_norm"]
    assert plan.grabs[1][1] == {"scale": 2.0}
    assert "scale" in _error(dict(OK, scale=2))  # without the grab nobody takes it


def test_unknown_registered_name_suggests():
    with pytest.raises(UserError, match="did you mean 'gaussian_teacher'"):
        resolve("gaussian_teachr", "batchfn")


@pytest.mark.parametrize("ref, words", [
    ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ("plugins_for_tests:nope", "has no attribute 'nope'"),
    ("__main__:fn", "__main__"),
    ("plugins_for_tests:", "module:function"),
])
def test_bad_references(ref, words):
    with pytest.raises(UserError) as info:
        resolve(ref, "batchfn")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_functions_from_main_are_refused_with_the_fix():
    def local():
        pass

    local.__module__ = "__main__"
    local.__qualname__ = "my_batch"
    with pytest.raises(UserError) as info:
        to_reference(local, "batchfn")
    assert "move my_batch into a .py file" in str(info.value)


def test_module_functions_become_import_paths():
    import plugins_for_tests

    assert to_reference(plugins_for_tests.linear_teacher, "batchfn") == "plugins_for_tests:linear_teacher"
    from batchfns import gaussian_teacher

    assert to_reference(gaussian_teacher, "batchfn") == "gaussian_teacher"


def test_a_registered_user_function_is_stored_by_import_path():
    """A worker never imported the user's module, so a registered short name would not resolve there."""
    import types

    from runner.registry import batchfn

    module = types.ModuleType("users_module")

    def sine(d: int, batch_size: int, *, gen, device):
        raise NotImplementedError

    sine.__module__, sine.__qualname__ = "users_module", "sine"
    module.sine = batchfn("users_sine")(sine)
    assert to_reference(module.sine, "batchfn") == "users_module:sine"


def test_a_batch_function_must_take_the_injected_arguments():
    message = _error(dict(OK, batchfn="plugins_for_tests:no_batch_size"))
    assert "missing: batch_size" in message
