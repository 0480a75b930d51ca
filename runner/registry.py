"""Plug-in registries and name resolution.

A plug-in (batch function, model, grab) is named in a job config either by a registered name
("gaussian_teacher") or by an import path ("mymodule:fn"). Configs store only these strings, never
callables, so a spawned worker rebuilds everything by importing. Built-ins register themselves
when their package (batchfns, grabs, runner.models) is imported. An import path is resolved only as
the plug-in policy (runner.plugin_policy) allows, at submit and again in the worker.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .builtin_signatures import SOURCES, stand_ins
from .errors import UserError
from .plugin_policy import check_location, check_object
from .text import closest, did_you_mean

KINDS = ("batchfn", "model", "grab")
_BUILTIN_PACKAGES = {kind: package for kind, (package, _) in SOURCES.items()}  # batchfns, runner.train.models, grabs
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}

MAIN_MODULE_FIX = (
    "functions defined in __main__ (a notebook or the script itself) cannot reach spawned workers: "
    "move {name} into a .py file next to the notebook and name it 'module:{name}'"
)


def _register(kind: str, name: str | None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        known = _REGISTRY[kind].get(key)
        if known is not None and known is not fn and _qualname(known) != _qualname(fn):
            raise ValueError(f"{kind} {key!r} is registered twice ({_qualname(known)} and {_qualname(fn)})")
        _REGISTRY[kind][key] = fn
        fn.__runner_name__ = key  # type: ignore[attr-defined]
        return fn

    return decorator


def batchfn(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a batch-function factory under `name` (default: the function's name)."""
    return _register("batchfn", name)


def model(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model constructor (class or function) under `name`."""
    return _register("model", name)


def grab(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a grab (a measurement taken inside the training loop) under `name`."""
    return _register("grab", name)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


def is_registered(obj: Any, kind: str) -> bool:
    """True when `obj` is what runner's decorator registered for this kind under its name."""
    name = getattr(obj, "__runner_name__", None)
    return isinstance(name, str) and _REGISTRY[kind].get(name) is obj


def registered(kind: str) -> dict[str, Callable[..., Any]]:
    """All registered plug-ins of one kind, built-ins included."""
    importlib.import_module(_BUILTIN_PACKAGES[kind])
    return dict(_REGISTRY[kind])


def known(kind: str) -> dict[str, Callable[..., Any]]:
    """Every plug-in of one kind by registered name, without importing the built-ins: until their
    package is imported they are stand-ins read from the source (runner.builtin_signatures), which
    carry the real signatures; what this process registered comes as itself."""
    if _BUILTIN_PACKAGES[kind] in sys.modules:
        return dict(_REGISTRY[kind])
    return {**stand_ins(kind), **_REGISTRY[kind]}


def to_reference(obj: Any, kind: str) -> str:
    """Turn a callable handed to the Python API into the string stored in configs."""
    if isinstance(obj, str):
        return obj
    name = getattr(obj, "__runner_name__", None)
    package, module = _BUILTIN_PACKAGES[kind], getattr(obj, "__module__", None) or ""
    builtin = module == package or module.startswith(package + ".")
    if name is not None and _REGISTRY[kind].get(name) is obj and builtin:
        return name  # a built-in: every worker registers it by importing the package
    # A user's registered function is stored by import path: a spawned worker has never imported
    # the user's module, so the short name would mean nothing there.
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module is None or qualname is None:
        raise UserError(f"{kind} {obj!r} is neither a registered name nor an importable function")
    if module == "__main__":
        raise UserError(f"{kind} {qualname!r} is defined in __main__; " + MAIN_MODULE_FIX.format(name=qualname))
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise UserError(f"{kind} {qualname!r} is a local function or lambda: define it at the top level of a module")
    return f"{module}:{qualname}"


_IN_PROCESS: dict[str, Callable[..., Any]] = {}  # "module:qualname" -> a function object runner.train was handed


def in_process_reference(obj: Callable[..., Any], kind: str) -> str:
    """For runner.train in this process: the reference of a function object, which `resolve` then
    maps back to the object itself (a function defined in a notebook included: nothing is spawned)."""
    try:
        return to_reference(obj, kind)
    except UserError:
        ref = f"{getattr(obj, '__module__', None) or '?'}:{getattr(obj, '__qualname__', None) or repr(obj)}"
        _IN_PROCESS[ref] = obj
        return ref


def check_portable(ref: str, kind: str) -> None:
    """UserError when a short name would mean nothing to a spawned worker: a function registered
    under it in this process only (workers import the built-in plug-ins, not the submitting script)."""
    if ":" in ref:
        return
    fn = known(kind).get(ref)
    if fn is None:
        return  # resolve reports an unknown name
    module, qualname = getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", ref)
    package = _BUILTIN_PACKAGES[kind]
    if module == package or module.startswith(package + "."):
        return
    if module == "__main__":
        raise UserError(f"{kind} {ref!r} is registered in __main__; " + MAIN_MODULE_FIX.format(name=qualname))
    raise UserError(f"{kind} {ref!r} is registered only in this process (by module {module!r}), and workers know "
                    f"the built-in names only: write '{module}:{qualname}' in the grid, or pass the function itself")


@dataclass(frozen=True)
class Plugin:
    """A resolved plug-in: the reference as written in the config and the callable it names."""

    kind: str
    ref: str
    fn: Callable[..., Any]


def _ensure_cwd_on_path() -> None:
    """Workers and submit resolve user modules from the working folder, like a notebook does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def resolve(ref: Any, kind: str, *, signature_only: bool = False) -> Plugin:
    """Find the callable a config names; UserError with the fix when it cannot be found, or when the
    plug-in policy (runner.plugin_policy) refuses an import path: its module's location is checked
    before it is imported, the object's kind before it is returned. Registered short names and
    objects runner.train was handed in this process are the user's own choice and skip the policy.
    `signature_only` (validation): a built-in not imported yet may come as its stand-in, so that a
    submit naming only built-ins does not import torch."""
    if not isinstance(ref, str) or not ref:
        raise UserError(f"{kind} must be a registered name or 'module:function', got {ref!r}")
    if ref in _IN_PROCESS:
        return Plugin(kind, ref, _IN_PROCESS[ref])
    if ":" not in ref:
        table = known(kind) if signature_only else registered(kind)
        if ref in table:
            return Plugin(kind, ref, table[ref])
        near = did_you_mean(ref, table)
        hint = f"{near} " if near else ""
        raise UserError(
            f"unknown {kind} {ref!r}: {hint}known: {', '.join(sorted(table))}; "
            f"for your own function write 'module:function'"
        )
    module_name, _, attr = ref.partition(":")
    if module_name == "__main__":
        raise UserError(f"{kind} {ref!r} is defined in __main__; " + MAIN_MODULE_FIX.format(name=attr or "it"))
    if not module_name or not attr:
        raise UserError(f"{kind} {ref!r} is not of the form 'module:function'")
    _ensure_cwd_on_path()
    trust = check_location(ref, kind, module_name)  # before the import: a refused module runs no code
    obj = _attribute(_import(module_name, kind, ref), module_name, attr, kind, ref)
    if not callable(obj):
        raise UserError(f"{kind} {ref!r} is not callable")
    check_object(ref, kind, obj, registered=is_registered(obj, kind), trust=trust)
    return Plugin(kind, ref, obj)


def _import(module_name: str, kind: str, ref: str) -> Any:
    """Import the module an import path names; UserError with the fix when that fails."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(
                f"cannot import module {module_name!r} for {kind} {ref!r}: run from the folder that holds "
                f"{module_name.replace('.', '/')}.py or add that folder to PYTHONPATH"
            ) from None
        raise UserError(f"importing {module_name!r} for {kind} {ref!r} failed: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise UserError(f"importing {module_name!r} for {kind} {ref!r} failed: {type(exc).__name__}: {exc}") from None


def _attribute(module: Any, module_name: str, attr: str, kind: str, ref: str) -> Any:
    """The object a dotted attribute path names in a module; UserError with the closest name."""
    obj = module
    parts = attr.split(".")
    for i, part in enumerate(parts):
        if not hasattr(obj, part):
            near = closest(part, [n for n in dir(obj) if not n.startswith("_")])
            fix = f"did you mean '{module_name}:{'.'.join([*parts[:i], near])}'?" if near else "check the name"
            raise UserError(f"module {module_name!r} has no attribute {attr!r} (from {kind} {ref!r}): {fix}")
        obj = getattr(obj, part)
    return obj
