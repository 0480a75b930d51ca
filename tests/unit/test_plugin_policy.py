"""The plug-in policy (issue 16 item 2): `resolve` calls an import path only if its module is the
user's own (not the standard library, not an installed third-party distribution) or allowed with
RUNNER_PLUGIN_PACKAGES, or the object is registered with runner's decorators; and only if the object
is of the right kind. Refused paths are one line naming the rule and the fix, and a refused module is
never imported. The worker side is tests/system/test_plugin_policy_worker.py."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import plugin_policy
from runner.errors import UserError
from runner.plugin_policy import ALLOW_ENV
from runner.registry import _REGISTRY, resolve
from runner.train.grabbing import GRAB_CONTEXT
from runner.train.plan import BATCHFN_INJECTED

USER_MODULE = "policy_user_module"  # written into tmp_path: a user's own .py file
FAKE_DIST = "policy_fake_dist"      # written into a folder named site-packages: an installed distribution

USER_SOURCE = f'''
import torch
import runner

class Net(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.layer = torch.nn.Linear(d_in, d_out)

class NotAModel:
    pass

def make_net(d_in: int, d_out: int):
    return Net(d_in, d_out)

@runner.model("policy_registered_net")
def registered_net(d_in: int, d_out: int):
    return Net(d_in, d_out)

def teacher(d: int, batch_size: int, *, gen, device):
    raise NotImplementedError

def teacher_without_gen(d: int, batch_size: int, *, device):
    raise NotImplementedError

class Teacher:
    def __init__(self, d: int, batch_size: int, *, gen, device):
        pass

def norm(model, **ctx):
    return 0.0

def norm_by_name(model, {", ".join(GRAB_CONTEXT[1:])}):
    return 0.0

def norm_without_ctx(model, X_test):
    return 0.0

def norm_without_model(*, step, **ctx):
    return 0.0
'''


def _refusal(ref: str, kind: str) -> str:
    """The message of the UserError that resolve raises; it must be one line."""
    with pytest.raises(UserError) as info:
        resolve(ref, kind)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{kind} {ref!r} is refused: "), message
    return message


def _forget(*names: str) -> None:
    """Drop modules a test imported and what they registered, so the next test starts clean."""
    for name in names:
        sys.modules.pop(name, None)
    for table in _REGISTRY.values():
        for key in [k for k, fn in table.items() if getattr(fn, "__module__", "") in names]:
            del table[key]


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A .py file of the user's in the working folder, as a notebook's folder would hold."""
    (tmp_path / f"{USER_MODULE}.py").write_text(USER_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield USER_MODULE
    _forget(USER_MODULE)


@pytest.fixture
def site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A package in a folder named site-packages on sys.path, whose import writes a marker file:
    (the site-packages folder, the marker)."""
    folder, marker = tmp_path / "site-packages", tmp_path / "imported.txt"
    (folder / FAKE_DIST).mkdir(parents=True)
    (folder / FAKE_DIST / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import torch\nimport runner\n\n"
        "@runner.model('policy_fake_net')\nclass Net(torch.nn.Module):\n    pass\n\n"
        "class Other(torch.nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(folder))
    plugin_policy._distributions.cache_clear()
    yield folder, marker
    plugin_policy._distributions.cache_clear()
    _forget(FAKE_DIST)


# --- what is refused -------------------------------------------------------------------------------
@pytest.mark.parametrize("ref, kind, words", [
    ("os:system", "model", ["os is the standard library", "your own modules only", f"{ALLOW_ENV}=os"]),
    ("os:system", "batchfn", ["os is the standard library", "a .py file of yours"]),
    ("os:system", "grab", ["os is the standard library"]),
    ("subprocess:run", "batchfn", ["subprocess is the standard library", f"{ALLOW_ENV}=subprocess"]),
    ("builtins:eval", "grab", ["builtins is the standard library"]),
    ("os.path:join", "grab", ["os is the standard library"]),  # the top package decides
    ("torch.nn:Linear", "model", ["torch is an installed third-party package", f"{ALLOW_ENV}=torch"]),
    ("numpy:sum", "grab", ["numpy is an installed third-party package"]),
    ("runner.queue.store:Store", "model", ["runner is runner's own package", "what @runner.model registered"]),
    ("runner.cli:main", "batchfn", ["runner is runner's own package", "@runner.batchfn"]),
    ("batchfns:gaussian_teacher", "model", ["batchfns is runner's own package"]),  # registered, as a batchfn
])
def test_the_standard_library_third_party_and_unregistered_internals_are_refused(ref, kind, words):
    message = _refusal(ref, kind)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("ref, kind, words", [
    ("make_net", "model", ["a model must be an nn.Module subclass (got a function)", "@runner.model"]),
    ("NotAModel", "model", ["an nn.Module subclass (got the class NotAModel)"]),
    ("Teacher", "batchfn", ["a batchfn must be a Python function", "(got the class Teacher)"]),
    ("teacher_without_gen", "batchfn", ["takes the arguments batch_size, gen and device (missing: gen)"]),
    ("Net", "grab", ["a grab must be a Python function called as fn(model, **context)"]),
    ("norm_without_ctx", "grab", ["takes neither **kwargs nor step, X_train", "add **ctx"]),
    ("norm_without_model", "grab", ["whose first parameter takes the model"]),
])
def test_an_object_of_the_wrong_kind_is_refused(user_module, ref, kind, words):
    message = _refusal(f"{user_module}:{ref}", kind)
    for word in words:
        assert word in message, (word, message)


def test_the_allowed_setting_opens_a_location_but_not_the_kind_rule(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "numpy, os")
    assert "a model must be an nn.Module subclass (got a built-in function)" in _refusal("os:system", "model")
    assert "a batchfn must be a Python function" in _refusal("os:system", "batchfn")


# --- what is accepted ------------------------------------------------------------------------------
@pytest.mark.parametrize("ref, kind", [
    ("batchfns:gaussian_teacher", "batchfn"),  # registered with @runner.batchfn
    ("grabs:weight_norm", "grab"),
    ("gaussian_teacher", "batchfn"),           # short names are the registry's, no import path
    ("mlp", "model"),
])
def test_registered_plugins_are_accepted(ref, kind):
    assert resolve(ref, kind).ref == ref


@pytest.mark.parametrize("ref, kind", [
    ("Net", "model"), ("registered_net", "model"), ("teacher", "batchfn"), ("norm", "grab"), ("norm_by_name", "grab"),
])
def test_the_users_own_plugins_of_the_right_kind_are_accepted(user_module, ref, kind):
    assert resolve(f"{user_module}:{ref}", kind).fn.__name__ == ref


def test_an_allowed_third_party_package_may_be_named(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "torchvision,torch")
    import torch

    assert resolve("torch.nn:Linear", "model").fn is torch.nn.Linear


def test_the_test_plugins_of_the_suite_pass():
    """The import paths the suite's jobs name (tests/plugins_for_tests.py, grab_plugins.py)."""
    for ref, kind in [("plugins_for_tests:linear_teacher", "batchfn"), ("plugins_for_tests:SyncingMLP", "model"),
                      ("plugins_for_tests:hidden_scale", "grab"), ("grab_plugins:NoisyNet", "model")]:
        assert resolve(ref, kind).ref == ref


# --- a refused module is never imported ------------------------------------------------------------
def test_a_refused_third_party_module_is_not_imported(site_packages):
    folder, marker = site_packages
    message = _refusal(f"{FAKE_DIST}:Net", "model")
    assert f"{FAKE_DIST} is an installed third-party package" in message
    assert not marker.exists() and FAKE_DIST not in sys.modules


def test_the_same_package_allowed_is_imported_and_checked(site_packages, monkeypatch):
    folder, marker = site_packages
    monkeypatch.setenv(ALLOW_ENV, FAKE_DIST)
    assert resolve(f"{FAKE_DIST}:Other", "model").fn.__name__ == "Other"
    assert marker.exists()
    monkeypatch.delenv(ALLOW_ENV)  # imported now: still judged by where it lives
    assert f"{FAKE_DIST} is an installed third-party package" in _refusal(f"{FAKE_DIST}:Other", "model")


def test_a_runner_plugin_distribution_may_name_what_it_registers(site_packages):
    """A distribution that requires runner is a plug-in package: its registered objects only."""
    folder, marker = site_packages
    info = folder / f"{FAKE_DIST}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {FAKE_DIST}\nVersion: 1.0\n"
                                   "Requires-Dist: runner>=0.1\n")
    (info / "top_level.txt").write_text(f"{FAKE_DIST}\n")
    assert resolve(f"{FAKE_DIST}:Net", "model").fn.__runner_name__ == "policy_fake_net"
    assert f"{FAKE_DIST} is a runner plug-in package" in _refusal(f"{FAKE_DIST}:Other", "model")


def test_a_refused_standard_library_module_is_not_imported_and_torch_stays_unloaded():
    """`this` prints the Zen of Python when imported: a refusal runs none of it (nor loads torch)."""
    import subprocess

    code = ("import sys\nfrom runner.registry import resolve\n"
            "try:\n    resolve('this:s', 'batchfn')\nexcept Exception as exc:\n    print(exc)\n"
            "print('torch' in sys.modules, 'this' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.splitlines() == ["batchfn 'this:s' is refused: this is the standard library, and runner calls "
                                       "plug-ins from your own modules only; name a function or class from a .py "
                                       f"file of yours, or allow the package with {ALLOW_ENV}=this",
                                       "False False"], out.stdout + out.stderr


# --- the contract agrees with the trainloop's ------------------------------------------------------
def test_the_policys_contract_is_the_trainloops():
    """runner.plugin_policy (a base module) cannot import runner.train: its copy of the names must agree."""
    assert set(plugin_policy.BATCHFN_ARGUMENTS) == set(BATCHFN_INJECTED)
    assert GRAB_CONTEXT[0] == "model" and plugin_policy.GRAB_KEYWORDS == GRAB_CONTEXT[1:]
