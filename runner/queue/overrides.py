"""Command-line overrides in the Hydra habit: `lr=0.01,0.1` replaces an axis, `base.steps=2000`
sets one value, `sweep=NAME` renames the sweep. `override` applies them to a GridSpec in order."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .grid_values import axis_values, fail, grab_list, is_generator, load_yaml

if TYPE_CHECKING:
    from .grid import GridSpec

_KEY_RE = re.compile(r"[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*")


_SWEEP_FN = re.compile(r"^([A-Za-z_]\w*)\((.*)\)$", re.DOTALL)  # Hydra's range(...), choice(...)
HYDRA_FUNCTIONS = ("range", "choice")  # the sweep functions of Hydra's override grammar runner takes


def _parse_value(raw: str, override: str, source: str) -> tuple[bool, Any]:
    """(is_comma_list, value or list of values) of an override's right-hand side."""
    text, where = raw.strip(), f"override {override!r}: "
    if not text:
        raise fail(source, f"override {override!r} has no value (write e.g. lr=0.01, or lr=null for None)")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and text[0] not in text[1:-1]:
        return False, text[1:-1]  # quoted, as Hydra quotes: one string, commas and all
    called = _SWEEP_FN.match(text)
    if called:
        return True, _sweep_function(called.group(1), called.group(2), override, source)
    if text[0] in "[{":
        return False, load_yaml(text, source, where)
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise fail(source, f"override {override!r} has an empty item in its comma list")
    values = [load_yaml(item, source, where) for item in items]
    return (True, values) if len(values) > 1 else (False, values[0])


def _sweep_function(name: str, args: str, override: str, source: str) -> list[Any]:
    """Hydra's `range(start, stop[, step])` (floats too, stop excluded) and `choice(a, b, ...)`."""
    where = f"override {override!r}: "
    if name not in HYDRA_FUNCTIONS:
        raise fail(source, f"{where}{name}(...) is not supported; runner takes Hydra's range(start, stop, step) "
                           "and choice(a, b, ...), or a comma list a,b,c")
    items = [load_yaml(item, source, where) for item in args.split(",")] if args.strip() else []
    if name == "choice":
        if not items:
            raise fail(source, f"{where}choice() needs at least one value")
        return items
    if not 1 <= len(items) <= 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise fail(source, f"{where}range takes one to three numbers: range(stop), range(start, stop) or "
                           "range(start, stop, step)")
    start, stop, step = (0, items[0], 1) if len(items) == 1 else (items[0], items[1], items[2] if len(items) == 3 else 1)
    if step == 0:
        raise fail(source, f"{where}range's step must not be 0")
    count = max(0, math.ceil((stop - start) / step - 1e-9))
    if count > 100_000:
        raise fail(source, f"{where}range gives {count:,} values; a grid axis is at most 100,000")
    values = [start + i * step for i in range(count)]
    return [round(v, 12) if isinstance(v, float) else v for v in values]  # 0.30000000000000004 -> 0.3


def override(spec: GridSpec, overrides: Sequence[str]) -> GridSpec:
    src, sweep, base, axes = spec.source, spec.sweep, dict(spec.base), dict(spec.axes)
    zipped = {key: i for i, group in enumerate(spec.zips) for key in group}
    for override in overrides:
        text = str(override).strip()
        if text.startswith("~"):  # Hydra's delete: the key leaves base (or stops being an axis)
            name = text[1:].partition("=")[0].strip().removeprefix("base.").removeprefix("grid.")
            if name not in base and name not in axes:
                raise fail(src, f"override {override!r}: {name!r} is not in the grid's base or axes; nothing to remove")
            base.pop(name, None)
            axes.pop(name, None)
            continue
        adding = text.startswith("+") and not text.startswith("++")
        text = text.lstrip("+")  # +key=value adds a base key (++key=value: adds or sets, as key=value does)
        key, sep, raw = text.partition("=")
        key, where = key.strip(), f"override {override!r}"
        if adding and (key.removeprefix("base.") in base or key in axes):
            raise fail(src, f"{where}: {key!r} is in the grid already; +KEY adds a new key (write {key}=VALUE to set it)")
        if not sep or not key:
            raise fail(src, f"{where} is not KEY=VALUE (e.g. lr=0.01,0.1 or base.steps=2000)")
        if not _KEY_RE.fullmatch(key):
            raise fail(src, f"{where}: {key!r} is not a key (letters, digits, _ and -; dots for nesting)")
        head, _, rest = key.partition(".")
        name = rest if head in ("base", "grid") else key
        if name.split(".")[0] in zipped:
            raise fail(src, f"{where}: {name!r} is in zip group {zipped[name.split('.')[0]]}; overriding a zip "
                             "member or a whole zip group is not supported (edit the file)")
        if key == "sweep":
            sweep = raw.strip()  # taken literally: sweep=2024 names a sweep "2024"
            continue
        if head in ("zip", "exclude", "description") or (head in ("base", "grid") and not rest):
            fix = "write base.KEY=VALUE or KEY=VALUE" if head in ("base", "grid") else "edit the file"
            raise fail(src, f"{where}: {head} cannot be overridden this way ({fix})")
        if (head not in ("base", "grid") and "." in key) or (head == "grid" and "." in rest):
            raise fail(src, f"{where}: only base keys nest (write base.{key.removeprefix('grid.')}=VALUE)")
        is_list, value = _parse_value(raw, override, src)
        if head == "base":
            if is_list:
                raise fail(src, f"{where}: base.{rest} takes one value (to sweep it write {rest}=v1,v2; "
                                 "for a list value write [a, b])")
            if rest.split(".")[0] in axes:
                raise fail(src, f"{where}: {rest.split('.')[0]!r} is a grid axis (write {rest}=VALUE to pin it)")
            base = _set_path(base, rest.split("."), value, where, src)
        elif is_list or head == "grid" or key in axes or is_generator(value):
            axes[name] = value if is_list else axis_values(value, where, src)
            base.pop(name, None)
        else:
            base[key] = grab_list(value, src) if key == "grabs" else value
    return replace(spec, sweep=sweep, base=base, axes=axes)


def _set_path(base: dict[str, Any], path: list[str], value: Any, where: str, source: str) -> dict[str, Any]:
    """A copy of base with base[p0][p1]...=value; nested dicts on the path are copied, not changed."""
    node = base = dict(base)
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is not None and not isinstance(child, dict):
            raise fail(source, f"{where}: base.{'.'.join(path[:i + 1])} is {child!r}, not a mapping")
        node[part] = child = dict(child or {})
        node = child
    node[path[-1]] = grab_list(value, source) if path == ["grabs"] else value
    return base
