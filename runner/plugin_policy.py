"""The plug-in policy: which import paths runner may call (issue 16 item 2).

A grid names plug-ins by import path ("module:attr") and a worker imports and calls what it names
with the job's values, so a grid, or a row written straight into the database, could name
`os:system`. `runner.registry.resolve` asks this module twice, at submit and again in the worker:

- where (`check_location`, before the module is imported): the standard library and installed
  third-party distributions are refused, unless their top package is allowed in RUNNER_PLUGIN_PACKAGES
  or, for runner's own packages and distributions that require runner, the object is registered with
  runner's decorators; everything else (the working folder, PYTHONPATH, a notebook's folder) is the
  user's own code;
- what (`check_object`, after getattr, before any call): a model is an nn.Module subclass, a batch
  function and a grab are Python functions whose signatures fit the contract.

A refusal is a UserError of one line that names the rule and the fix. No torch at import: submit
stays torch-free, and a class can only be an nn.Module subclass once something imported torch.
"""
from __future__ import annotations

import enum
import functools
import importlib.metadata
import importlib.util
import inspect
import os
import re
import site
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import PurePath
from types import ModuleType
from typing import Any

from .errors import UserError

ALLOW_ENV = "RUNNER_PLUGIN_PACKAGES"  # comma-separated top-level packages whose objects a grid may name
RUNNER_PACKAGES = frozenset({"runner", "batchfns", "grabs"})  # runner's own: only registered objects
SITE_FOLDERS = frozenset({"site-packages", "dist-packages"})  # where installers put distributions

# The call contracts, as runner.train keeps them (base modules may not import runner.train, see
# tests/unit/test_layout.py; tests/unit/test_plugin_policy.py checks that these agree with it):
# runner.train.plan.BATCHFN_INJECTED, and runner.train.grabbing.GRAB_CONTEXT after `model`.
BATCHFN_ARGUMENTS = ("gen", "device", "batch_size")
GRAB_KEYWORDS = ("step", "X_train", "y_train", "X_test", "y_test", "optimizer", "init_params", "config",
                 "loss_fn", "batch")
OWN_CODE_ONLY = "runner calls plug-ins from your own modules only"
OWN_CODE_FIX = "name a function or class from a .py file of yours"


class Trust(enum.Enum):
    """What a module's location lets through; the kind rule applies to both."""

    ANY = "any"                # the user's own code, or an allowed package: any object of the right kind
    REGISTERED = "registered"  # runner's own packages, runner plug-in distributions: registered objects only


def allowed_packages() -> frozenset[str]:
    """The top-level packages allowed explicitly in RUNNER_PLUGIN_PACKAGES (read at each check)."""
    return frozenset(name.strip() for name in os.environ.get(ALLOW_ENV, "").split(",") if name.strip())


def refused(kind: str, ref: str, rule: str, fix: str) -> UserError:
    """The one-line refusal: what was named, the rule it breaks, how to fix it."""
    return UserError(f"{kind} {ref!r} is refused: {rule}; {fix}")


# --- where: before the module is imported ------------------------------------------------------
def check_location(ref: str, kind: str, module_name: str) -> Trust:
    """What the location of `module_name` lets through; UserError, before anything is imported, for
    the standard library and for installed third-party distributions."""
    top = module_name.split(".")[0]
    if top in allowed_packages():
        return Trust.ANY
    if top in RUNNER_PACKAGES:
        return Trust.REGISTERED
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise refused(kind, ref, f"{top} is the standard library, and {OWN_CODE_ONLY}", _allow_fix(top))
    paths = _top_paths(top, kind, ref)
    if not any(_in_site_folder(path) for path in paths):
        return Trust.ANY  # the user's own code; nothing found: the import reports the missing module
    if _requires_runner(top):
        return Trust.REGISTERED
    raise refused(kind, ref, f"{top} is an installed third-party package, and {OWN_CODE_ONLY}", _allow_fix(top))


def _allow_fix(top: str) -> str:
    """The fix for a refused location: code of one's own, or the package allowed explicitly."""
    return f"{OWN_CODE_FIX}, or allow the package with {ALLOW_ENV}={top}"


def _top_paths(top: str, kind: str, ref: str) -> list[str]:
    """The files and folders a top-level package comes from, without running its code: from the
    module already imported, else from its spec (finding a top-level spec executes no module code)."""
    module = sys.modules.get(top)
    if isinstance(module, ModuleType):
        return _module_paths(module)
    try:
        spec = importlib.util.find_spec(top)
    except Exception as exc:  # a malformed name, a broken finder: refuse rather than import blindly
        raise refused(kind, ref, f"cannot tell where module {top!r} comes from ({type(exc).__name__}: {exc})",
                      "check the module name") from None
    if spec is None:
        return []
    return _paths(spec.origin, spec.submodule_search_locations)


def _module_paths(module: ModuleType) -> list[str]:
    """The files and folders an imported module comes from (its spec, else __file__ and __path__)."""
    spec = getattr(module, "__spec__", None)
    if spec is not None:
        return _paths(spec.origin, spec.submodule_search_locations)
    return _paths(getattr(module, "__file__", None), getattr(module, "__path__", None))


def _paths(origin: str | None, locations: Iterable[str] | None) -> list[str]:
    """A spec's origin (when it is a file, not 'built-in' or 'frozen') and its package folders."""
    found = [origin] if isinstance(origin, str) and os.path.isabs(origin) else []
    return found + [str(p) for p in (locations or [])]


@functools.lru_cache(maxsize=1)
def _site_folders() -> tuple[str, ...]:
    """The folders installers put distributions in, resolved: site's, the user's, sysconfig's."""
    folders = [*getattr(site, "getsitepackages", lambda: [])(), site.getusersitepackages()]
    folders += [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    return tuple(sorted({os.path.realpath(folder) for folder in folders if folder}))


def _in_site_folder(path: str) -> bool:
    """True for a path inside an installed distribution (a site-packages or dist-packages folder).
    An editable install whose sources are in the user's tree is not: it counts as the user's code."""
    real = os.path.realpath(path)
    if SITE_FOLDERS & set(PurePath(real).parts):
        return True
    return any(real == folder or real.startswith(folder + os.sep) for folder in _site_folders())


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    """Top-level package -> the installed distributions that provide it (costly: read once)."""
    return importlib.metadata.packages_distributions()


def _requires_runner(top: str) -> bool:
    """True when a distribution providing `top` declares runner as a requirement: a runner plug-in
    package, whose registered objects may be named."""
    for dist in _distributions().get(top, []):
        try:
            requirements = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        if any(_requirement_name(r) == "runner" for r in requirements):
            return True
    return False


def _requirement_name(requirement: str) -> str:
    """The normalised project name a requirement string ('runner>=0.1; extra == "x"') names."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


# --- what: after getattr, before any call ------------------------------------------------------
def check_object(ref: str, kind: str, obj: Any, *, registered: bool, trust: Trust) -> None:
    """UserError unless `obj` may be called as a `kind`: registered with runner's decorator for this
    kind, or (where the location allows any object) of the right kind, judged without calling it."""
    if registered:
        return
    if trust is Trust.REGISTERED:
        top = ref.partition(":")[0].split(".")[0]
        package = "runner's own package" if top in RUNNER_PACKAGES else "a runner plug-in package"
        raise refused(kind, ref, f"{top} is {package}, of which runner calls only what @runner.{kind} registered",
                      f"name a registered {kind}, or {OWN_CODE_FIX}")
    KIND_RULES[kind](ref, obj)


def _describe(obj: Any) -> str:
    """What an object is, in a few words, for a refusal ('a function', 'a built-in function'...)."""
    if inspect.isclass(obj):
        return f"the class {obj.__name__}"
    if inspect.isfunction(obj):
        return "a function"
    if inspect.isbuiltin(obj):
        return "a built-in function"
    return f"an instance of {type(obj).__name__}"


def _check_model(ref: str, obj: Any) -> None:
    """A model is a class derived from torch.nn.Module (if torch was never imported, nothing is)."""
    torch = sys.modules.get("torch")
    module_class = getattr(getattr(torch, "nn", None), "Module", None)
    if inspect.isclass(obj) and module_class is not None and issubclass(obj, module_class):
        return
    raise refused("model", ref, f"a model must be an nn.Module subclass (got {_describe(obj)})",
                  "register a constructor function with @runner.model, or name the class")


def _parameters(kind: str, ref: str, obj: Any, contract: str) -> list[inspect.Parameter]:
    """The parameters of a Python function (inspect.signature calls nothing); UserError for anything
    else: a built-in, a class, an instance."""
    if not inspect.isfunction(obj):
        raise refused(kind, ref, f"a {kind} must be a Python function {contract} (got {_describe(obj)})",
                      f"name a function (def) of yours, or register one with @runner.{kind}")
    return list(inspect.signature(obj).parameters.values())


def _check_batchfn(ref: str, obj: Any) -> None:
    """A batch function is a Python function that takes gen, device and batch_size by keyword."""
    contract = "that takes the arguments batch_size, gen and device"
    params = _parameters("batchfn", ref, obj, contract)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [name for name in BATCHFN_ARGUMENTS if name not in names]
    if missing:
        raise refused("batchfn", ref, f"a batchfn must be a Python function {contract} (missing: {', '.join(missing)})",
                      "add them to its parameters, see examples/my_batchfns.py")


def _takes_the_model(first: inspect.Parameter | None) -> bool:
    """True when a grab's first parameter receives the model, passed positionally."""
    if first is None or first.kind in (first.KEYWORD_ONLY, first.VAR_KEYWORD):
        return False
    return first.kind is not first.POSITIONAL_OR_KEYWORD or first.name not in GRAB_KEYWORDS


def _check_grab(ref: str, obj: Any) -> None:
    """A grab is a Python function called as fn(model, **context): a first parameter that takes the
    model, and **kwargs or a parameter for each context name."""
    contract = "called as fn(model, **context)"
    params = _parameters("grab", ref, obj, contract)
    if not _takes_the_model(params[0] if params else None):
        raise refused("grab", ref, f"a grab must be a Python function {contract}, whose first parameter takes the "
                      "model", "write it as def grab(model, ..., **ctx)")
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    names = {p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [name for name in GRAB_KEYWORDS if name not in names]
    if missing:
        raise refused("grab", ref, f"a grab must be a Python function {contract}, and it takes neither **kwargs nor "
                      f"{', '.join(missing)}", "add **ctx to its parameters")


KIND_RULES: dict[str, Callable[[str, Any], None]] = {"model": _check_model, "batchfn": _check_batchfn,
                                                      "grab": _check_grab}
