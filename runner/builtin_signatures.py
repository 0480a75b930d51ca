"""The built-in plug-ins' signatures, read from their source files without importing them.

Submit validates a grid against the parameters of the plug-ins it names. The built-ins live in
packages that import torch (1-2 s), which a submit naming only built-ins does not otherwise need: so
their signatures are read here from the source with `ast` (decorator, name, parameters, literal
defaults, simple annotations) and stand in for the functions until a worker imports the real ones.
tests/unit/test_builtin_signatures.py checks that every stand-in's parameters are the real ones'.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import typing
from pathlib import Path
from typing import Any

# kind -> (the package whose import registers the built-ins, the decorator's name)
SOURCES = {"batchfn": ("batchfns", "batchfn"), "model": ("runner.train.models", "model"), "grab": ("grabs", "grab")}
_SIMPLE_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


class BuiltinStandIn:
    """A built-in plug-in not imported yet: its signature, module and name, for validation. Calling it
    imports its package and calls the real plug-in."""

    def __init__(self, kind: str, name: str, module: str, qualname: str, signature: inspect.Signature):
        self.__runner_name__, self.__module__, self.__qualname__ = name, module, qualname
        self.__name__ = qualname.rpartition(".")[2]
        self.__signature__ = signature
        self._kind = kind

    def real(self) -> Any:
        """The plug-in itself (imports its package, and torch with it)."""
        from .registry import registered

        return registered(self._kind)[self.__runner_name__]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<built-in {self._kind} {self.__runner_name__!r} ({self.__module__}:{self.__qualname__}), not imported>"


def stand_ins(kind: str) -> dict[str, BuiltinStandIn]:
    """Every built-in plug-in of one kind by its registered name, read from the source."""
    return dict(_read(kind))


@functools.lru_cache(maxsize=None)
def _read(kind: str) -> tuple[tuple[str, BuiltinStandIn], ...]:
    package, decorator = SOURCES[kind]
    out = []
    for module, path in _source_files(package):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in tree.body:
            name = _registered_name(node, decorator)
            if name is not None:
                out.append((name, BuiltinStandIn(kind, name, module, node.name, _signature(node))))  # type: ignore[union-attr]
    return tuple(out)


def _source_files(package: str) -> list[tuple[str, Path]]:
    """(module name, source file) of a package and its modules, or of a single module; found
    without running them (find_spec of a dotted name imports its parents, which are torch-free)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"the built-in plug-ins' package {package} is not installed")
    origin = Path(spec.origin)
    if not spec.submodule_search_locations:
        return [(package, origin)]
    return [(package if path.stem == "__init__" else f"{package}.{path.stem}", path)
            for path in sorted(origin.parent.glob("*.py"))]


def _registered_name(node: ast.stmt, decorator: str) -> str | None:
    """The name a top-level def or class registers under with @decorator(...), else None."""
    if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return None
    for dec in node.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        target = call.func if call is not None else dec
        called = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if called != decorator:
            continue
        if call is not None and call.args and isinstance(call.args[0], ast.Constant) and call.args[0].value:
            return str(call.args[0].value)
        return node.name
    return None


def _signature(node: ast.FunctionDef | ast.ClassDef) -> inspect.Signature:
    """A function's signature, or a class's __init__ without self."""
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            return inspect.Signature()
        return inspect.Signature(_parameters(init.args)[1:])
    return inspect.Signature(_parameters(node.args))


def _parameters(args: ast.arguments) -> list[inspect.Parameter]:
    P = inspect.Parameter
    positional = [*args.posonlyargs, *args.args]
    defaults = [P.empty] * (len(positional) - len(args.defaults)) + [_literal(d) for d in args.defaults]
    out = [P(a.arg, P.POSITIONAL_ONLY if i < len(args.posonlyargs) else P.POSITIONAL_OR_KEYWORD,
             default=d, annotation=_annotation(a.annotation)) for i, (a, d) in enumerate(zip(positional, defaults))]
    if args.vararg is not None:
        out.append(P(args.vararg.arg, P.VAR_POSITIONAL))
    out += [P(a.arg, P.KEYWORD_ONLY, default=P.empty if d is None else _literal(d), annotation=_annotation(a.annotation))
            for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg is not None:
        out.append(P(args.kwarg.arg, P.VAR_KEYWORD))
    return out


class _Unreadable:
    """A default that is not a literal (an expression): present, of no simple type."""

    def __repr__(self) -> str:
        return "<default>"


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _Unreadable()


def _annotation(node: ast.expr | None) -> Any:
    """int, float, bool, str and Literal[...] as the objects themselves; anything else as its source text."""
    if node is None:
        return inspect.Parameter.empty
    if isinstance(node, ast.Name) and node.id in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[node.id]
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", getattr(node.value, "attr", None)) == "Literal":
        values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        try:
            return typing.Literal[tuple(ast.literal_eval(v) for v in values)]  # type: ignore[misc]
        except ValueError:
            pass
    return ast.unparse(node)
