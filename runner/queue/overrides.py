"""Command-line overrides in the Hydra habit: `lr=0.01,0.1` replaces an axis, `base.steps=2000`
sets one value, `sweep=NAME` renames the sweep. `override` applies them to a GridSpec in order."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .grid_values import axis_values, fail, grab_list, is_generator, load_yaml

if TYPE_CHECKING:
    from .grid import GridSpec

_KEY_RE = re.compile(r"[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*")


def _parse_value(raw: str, override: str, source: str) -> tuple[bool, Any]:
    """(is_comma_list, value or list of values) of an override's right-hand side."""
    text, where = raw.strip(), f"override {override!r}: "
    if not text:
        raise fail(source, f"override {override!r} has no value (write e.g. lr=0.01, or lr=null for None)")
    if text[0] in "[{":
        return False, load_yaml(text, source, where)
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise fail(source, f"override {override!r} has an empty item in its comma list")
    values = [load_yaml(item, source, where) for item in items]
    return (True, values) if len(values) > 1 else (False, values[0])


def override(spec: GridSpec, overrides: Sequence[str]) -> GridSpec:
    src, sweep, base, axes = spec.source, spec.sweep, dict(spec.base), dict(spec.axes)
    zipped = {key: i for i, group in enumerate(spec.zips) for key in group}
    for override in overrides:
        key, sep, raw = str(override).partition("=")
        key, where = key.strip(), f"override {override!r}"
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
