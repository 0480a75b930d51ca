"""Grid files (DESIGN.md section 3): parse a YAML grid, apply command-line overrides, expand it
into one flat config per job, hash configs canonically. User mistakes raise a one-line UserError."""
from __future__ import annotations

import gc
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..hashing import canonical_json
from ..text import did_you_mean

TOP_KEYS = ("sweep", "description", "batchfn", "model", "grabs", "base", "grid", "zip", "exclude")
SHORTHANDS = ("batchfn", "model", "grabs")
GENERATORS = {"range": "{range: [stop]}, {range: [start, stop]} or {range: [start, stop, step]}",
              "linspace": "{linspace: [start, stop, num]}", "logspace": "{logspace: [start_exp, stop_exp, num]}"}
MAX_CELLS = 1_000_000  # a larger grid (or generated axis) is almost surely a typo
_CONTAINERS = (list, tuple, dict)
_KEY_RE = re.compile(r"[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*")
# YAML 1.1 reads 1e-3 (no dot, or no exponent sign) as a string; read it as a float, as YAML 1.2 does.
_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid: shared values (base), product axes, zip groups and exclusions."""

    sweep: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    exclude: list[dict[str, Any]]
    source: str


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping and reads 1e-3 as a float."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    line = first.start_mark.line + 1
                    raise yaml.composer.ComposerError(
                        None, None, f"duplicate key {key.value!r} (first on line {line}); remove one", key.start_mark)
        return node


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _fail(source: str, msg: str) -> UserError:
    return UserError(f"{source}: " + re.sub(r"\s*\n\s*", " ", msg))


def _load_yaml(text: str, source: str, where: str = "") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _fail(source, f"{where}malformed YAML{pos}: {e.problem or e.context} (fix the YAML there)") from None
    except yaml.YAMLError as e:
        raise _fail(source, f"{where}malformed YAML: {e}") from None


def _kind(value: Any) -> str:
    kinds = {list: "a list", dict: "a mapping", str: "a string", type(None): "null", int: "an integer"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _mapping(value: Any, where: str, what: str, source: str) -> dict[str, Any]:
    """A copy of a mapping with string keys; None counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(source, f"{where}: must be a mapping of {what}, not {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _fail(source, f"{where}: key {key!r} is not a string (quote it: '{key}')")
    return dict(value)


def _entries(value: Any, where: str, example: str, source: str) -> list[dict[str, Any]]:
    """A list of mappings (zip groups, exclude entries); None counts as empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, f"{where}: must be a list of mappings, not {_kind(value)} (write {where}: [{example}])")
    return [_mapping(item, f"{where}[{i}]", "key: value", source) for i, item in enumerate(value)]


def _grabs(value: Any, source: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _fail(source, f"grabs must be a list of names, not {_kind(value)} (write grabs: [weight_norm])")
    return value


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _generate(kind: str, args: Any, where: str, source: str) -> list[Any]:
    """Values of {range: ...}, {linspace: ...} or {logspace: ...}."""
    arity = (1, 2, 3) if kind == "range" else (3,)
    if not isinstance(args, list) or len(args) not in arity or not all(map(_is_num, args)):
        raise _fail(source, f"{where}: {kind} takes a list of {'1, 2 or 3' if kind == 'range' else 3} numbers, "
                            f"got {args!r} (write {GENERATORS[kind]})")
    if kind == "range":
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], 1) if len(args) == 2 else args
        if step == 0:
            raise _fail(source, f"{where}: range step must not be 0 (write {GENERATORS[kind]})")
        if all(isinstance(a, int) for a in (start, stop, step)):
            values: list[Any] = list(range(start, stop, step)[:MAX_CELLS + 1])
        else:  # floats: step by index (no drift), round, stop before `stop` as range() does
            values = []
            for i in range(MAX_CELLS + 1):
                v = round(start + i * step, 12)
                if (v >= stop) if step > 0 else (v <= stop):
                    break
                values.append(v)
        if len(values) > MAX_CELLS:
            raise _fail(source, f"{where}: range {args!r} gives more than {MAX_CELLS:,} values")
        if not values:
            raise _fail(source, f"{where}: range {args!r} gives no values (for a falling range use a negative step)")
        return values
    start, stop, num = args
    if not isinstance(num, int) or not 1 <= num <= MAX_CELLS:
        raise _fail(source, f"{where}: {kind} num must be a whole number from 1 to {MAX_CELLS:,}, got {num!r}")
    points = [start + (stop - start) * i / (num - 1) for i in range(num - 1)] + [stop] if num > 1 else [start]
    try:  # logspace keeps 12 significant digits: its values span magnitudes, so round(1e-13, 12) would be 0
        floats = ([round(float(p), 12) for p in points] if kind == "linspace"
                  else [float(f"{10.0 ** p:.12g}") for p in points])
    except OverflowError:
        floats = [math.inf]
    if not all(map(math.isfinite, floats)):
        raise _fail(source, f"{where}: {kind} {args!r} overflows a float")
    if isinstance(start, int) and isinstance(stop, int) and all(f.is_integer() for f in floats):
        return [int(f) for f in floats]  # integer inputs with whole results stay ints (widths, steps)
    return floats


def _is_generator(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in GENERATORS


def _axis_values(raw: Any, where: str, source: str) -> list[Any]:
    """An axis entry as a list of values: a list, a generator mapping, or one scalar."""
    if isinstance(raw, (list, tuple)):
        return list(raw)
    if _is_generator(raw):
        kind, args = next(iter(raw.items()))
        return _generate(kind, args, where, source)
    if isinstance(raw, Mapping):
        near = did_you_mean(str(next(iter(raw), "")), GENERATORS) if len(raw) == 1 else ""
        hint = f"{near} " if near else ""
        raise _fail(source, f"{where}: a mapping is not an axis ({hint}generators are {{range: [...]}}, "
                            "{linspace: [...]}, {logspace: [...]}; to sweep mappings put them in a list: [{...}])")
    if raw is None:
        raise _fail(source, f"{where} is empty (give its values, e.g. [1, 2], or write [null] for None)")
    return [raw]


def _check_json(value: Any, where: str, source: str) -> None:
    """Raise unless value can be stored as JSON and read back unchanged (integer keys of nested
    mappings become strings in place, as JSON would make them)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(source, f"{where} is {value!r}: NaN and infinity cannot be stored as JSON (use a number)")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", source)
    elif isinstance(value, dict):
        for key in list(value):
            # An integer key ({0: 2}: coordinate 0, degree 2) is stored, as JSON would, as the string '0'.
            if isinstance(key, int) and not isinstance(key, bool) and str(key) not in value:
                value[str(key)] = value.pop(key)
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(source, f"{where} has key {key!r}, which is not a string (quote it: '{key}')")
            _check_json(item, f"{where}.{key}", source)
    else:
        raise _fail(source, f"{where} is a {type(value).__name__} ({value!r}), which cannot be stored as JSON "
                            "(use a string, number, boolean, null, list or mapping; in YAML, quote it)")


def load_grid(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> GridSpec:
    """Read and parse a grid file; the sweep name defaults to the file's stem."""
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(source, "file not found (check the path)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(source, f"cannot read the grid file ({getattr(e, 'strerror', None) or e})") from None
    return parse_grid(_load_yaml(text, source), source, overrides, default_sweep=Path(path).stem)


def parse_grid(data: Mapping[str, Any], source: str = "<dict>", overrides: Sequence[str] = (),
               default_sweep: str | None = None) -> GridSpec:
    """Build a GridSpec from loaded YAML data, apply overrides, validate."""
    if data is None:
        raise _fail(source, "the grid file is empty (write at least sweep:, base: and grid:)")
    if not isinstance(data, Mapping):
        raise _fail(source, f"the top level must be a mapping (sweep:, base:, grid:, ...), not {_kind(data)}")
    for key in data:
        if key not in TOP_KEYS:
            near = did_you_mean(str(key), TOP_KEYS)
            hint = f"{near} " if near else ""
            raise _fail(source, f"unknown top-level key {key!r} ({hint}hyperparameters go under base: or grid:; "
                                f"allowed top-level keys: {', '.join(TOP_KEYS)})")
    if not isinstance(data.get("description"), (str, type(None))):
        raise _fail(source, f"description must be a string, not {_kind(data['description'])}")
    base = _mapping(data.get("base"), "base", "hyperparameter: value", source)
    for key in SHORTHANDS:
        if key in data:
            if key in base:
                raise _fail(source, f"{key!r} is given both at the top level and in base: (keep one)")
            base[key] = data[key]
    if "grabs" in base:
        base["grabs"] = _grabs(base["grabs"], source)
    grid = _mapping(data.get("grid"), "grid", "axis: values", source)
    axes = {key: _axis_values(raw, f"grid.{key}", source) for key, raw in grid.items()}
    groups = _entries(data.get("zip"), "zip", "{n_train: [256, 1024], batch_size: [256, 1024]}", source)
    zips = [{key: _axis_values(raw, f"zip[{i}].{key}", source) for key, raw in group.items()}
            for i, group in enumerate(groups)]
    exclude = _entries(data.get("exclude"), "exclude", "{width: 4096, lr: 0.1}", source)
    sweep = default_sweep if data.get("sweep") is None else data["sweep"]
    spec = _override_all(GridSpec(sweep, base, axes, zips, exclude, source), overrides)
    _validate(spec)
    return spec


_Groups = list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]  # (keys, rows) per product axis; a zip group is one


def _validate(spec: GridSpec) -> tuple[_Groups, bytearray]:
    """Check every rule (also after overrides); returns the product axes and a dropped-flag per cell."""
    src = spec.source
    if spec.sweep is None:
        raise _fail(src, "no sweep name (add 'sweep: NAME' to the grid or pass sweep=NAME)")
    if not isinstance(spec.sweep, str) or not spec.sweep.strip():
        raise _fail(src, f"sweep must be a non-empty string, not {spec.sweep!r} "
                         "(write e.g. sweep: lr-width; quote a name that looks like a number)")
    _check_json(spec.base, "base", src)
    owner: dict[str, str] = {}  # an axis may override a base value; two axes may not share a key
    places = [(f"grid.{key}", "grid:", key, values) for key, values in spec.axes.items()]
    for i, group in enumerate(spec.zips):
        if not group:
            raise _fail(src, f"zip[{i}] is empty (delete it)")
        places += [(f"zip[{i}].{key}", f"zip group {i}", key, values) for key, values in group.items()]
    for where, place, key, values in places:
        if key in owner:
            raise _fail(src, f"{key!r} is set in both {owner[key]} and {place}; a hyperparameter goes in one "
                             f"place only (remove it from {owner[key]})")
        owner[key] = place
        if not isinstance(values, list) or not values:
            raise _fail(src, f"{where} has no values (give at least one, e.g. {key}: [1])")
        _check_json(values, where, src)
    for i, group in enumerate(spec.zips):
        lengths = {key: len(values) for key, values in group.items()}
        if len(set(lengths.values())) > 1:
            told = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise _fail(src, f"zip[{i}] lists have unequal lengths ({told}); give each list in a group the same length")
    names = axis_names(spec)
    for i, entry in enumerate(spec.exclude):
        if not entry:
            raise _fail(src, f"exclude[{i}] is empty (delete it)")
        for key in (key for key in entry if key not in names):
            why = did_you_mean(str(key), names) or f"the axes are: {', '.join(names) or 'none'}"
            why = "it is in base:, the same in every job" if key in spec.base else why
            raise _fail(src, f"exclude[{i}] names {key!r}, which is not a grid or zip axis ({why})")
        _check_json(entry, f"exclude[{i}]", src)
    groups = [((key,), [(v,) for v in values]) for key, values in spec.axes.items()]
    groups += [(tuple(group), list(zip(*group.values(), strict=True))) for group in spec.zips]
    for names, rows in groups:
        seen: set[str] = set()
        for row in rows:
            if (text := canonical_json(row)) in seen:
                value = row[0] if len(row) == 1 else dict(zip(names, row, strict=True))
                raise _fail(src, f"{'/'.join(names)}: {value!r} appears twice, which would make duplicate jobs "
                                 "(remove one)")
            seen.add(text)
    sizes = [len(rows) for _, rows in groups]
    total = math.prod(sizes)
    if total > MAX_CELLS:
        raise _fail(src, f"the grid has {total:,} combinations, more than {MAX_CELLS:,} (shrink an axis)")
    dropped = _excluded(spec, groups, sizes)
    if all(dropped):
        raise _fail(src, f"exclude removes all {total} combinations (loosen exclude: or add axis values)")
    return groups, dropped


def _parse_value(raw: str, override: str, source: str) -> tuple[bool, Any]:
    """(is_comma_list, value or list of values) of an override's right-hand side."""
    text, where = raw.strip(), f"override {override!r}: "
    if not text:
        raise _fail(source, f"override {override!r} has no value (write e.g. lr=0.01, or lr=null for None)")
    if text[0] in "[{":
        return False, _load_yaml(text, source, where)
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise _fail(source, f"override {override!r} has an empty item in its comma list")
    values = [_load_yaml(item, source, where) for item in items]
    return (True, values) if len(values) > 1 else (False, values[0])


def apply_overrides(spec: GridSpec, overrides: Sequence[str]) -> GridSpec:
    """Apply Hydra-style KEY=VALUE overrides in order; returns a new, validated spec."""
    spec = _override_all(spec, overrides)
    _validate(spec)
    return spec


def _override_all(spec: GridSpec, overrides: Sequence[str]) -> GridSpec:
    src, sweep, base, axes = spec.source, spec.sweep, dict(spec.base), dict(spec.axes)
    zipped = {key: i for i, group in enumerate(spec.zips) for key in group}
    for override in overrides:
        key, sep, raw = str(override).partition("=")
        key, where = key.strip(), f"override {override!r}"
        if not sep or not key:
            raise _fail(src, f"{where} is not KEY=VALUE (e.g. lr=0.01,0.1 or base.steps=2000)")
        if not _KEY_RE.fullmatch(key):
            raise _fail(src, f"{where}: {key!r} is not a key (letters, digits, _ and -; dots for nesting)")
        head, _, rest = key.partition(".")
        name = rest if head in ("base", "grid") else key
        if name.split(".")[0] in zipped:
            raise _fail(src, f"{where}: {name!r} is in zip group {zipped[name.split('.')[0]]}; overriding a zip "
                             "member or a whole zip group is not supported (edit the file)")
        if key == "sweep":
            sweep = raw.strip()  # taken literally: sweep=2024 names a sweep "2024"
            continue
        if head in ("zip", "exclude", "description") or (head in ("base", "grid") and not rest):
            fix = "write base.KEY=VALUE or KEY=VALUE" if head in ("base", "grid") else "edit the file"
            raise _fail(src, f"{where}: {head} cannot be overridden this way ({fix})")
        if (head not in ("base", "grid") and "." in key) or (head == "grid" and "." in rest):
            raise _fail(src, f"{where}: only base keys nest (write base.{key.removeprefix('grid.')}=VALUE)")
        is_list, value = _parse_value(raw, override, src)
        if head == "base":
            if is_list:
                raise _fail(src, f"{where}: base.{rest} takes one value (to sweep it write {rest}=v1,v2; "
                                 "for a list value write [a, b])")
            if rest.split(".")[0] in axes:
                raise _fail(src, f"{where}: {rest.split('.')[0]!r} is a grid axis (write {rest}=VALUE to pin it)")
            base = _set_path(base, rest.split("."), value, where, src)
        elif is_list or head == "grid" or key in axes or _is_generator(value):
            axes[name] = value if is_list else _axis_values(value, where, src)
            base.pop(name, None)
        else:
            base[key] = _grabs(value, src) if key == "grabs" else value
    return replace(spec, sweep=sweep, base=base, axes=axes)


def _set_path(base: dict[str, Any], path: list[str], value: Any, where: str, source: str) -> dict[str, Any]:
    """A copy of base with base[p0][p1]...=value; nested dicts on the path are copied, not changed."""
    node = base = dict(base)
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is not None and not isinstance(child, dict):
            raise _fail(source, f"{where}: base.{'.'.join(path[:i + 1])} is {child!r}, not a mapping")
        node[part] = child = dict(child or {})
        node = child
    node[path[-1]] = _grabs(value, source) if path == ["grabs"] else value
    return base


def axis_names(spec: GridSpec) -> list[str]:
    """Every varying key: grid axes, then zip-group keys, in file order."""
    return list(spec.axes) + [key for group in spec.zips for key in group]


def _same(a: Any, b: Any) -> bool:
    """Equality for exclude: 1 == 1.0, but True != 1; containers compare element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clone(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


def _copier(values: list[Any]) -> Callable[[Any], Any] | None:
    """How to copy a key's values per config: None (immutable), list (flat lists) or a deep clone."""
    if not any(isinstance(v, _CONTAINERS) for v in values):
        return None
    flat = all(type(v) is list and not any(isinstance(x, _CONTAINERS) for x in v) for v in values)
    return list if flat else _clone


def expand(spec: GridSpec) -> list[dict[str, Any]]:
    """One config per job: base merged with the cell's axis values; last axis fastest; no shared lists."""
    groups, dropped = _validate(spec)
    columns = [(key, [value]) for key, value in spec.base.items()]
    columns += [(key, [row[j] for row in rows]) for names, rows in groups for j, key in enumerate(names)]
    copiers = [(key, copy) for key, values in columns if (copy := _copier(values))]
    collect = gc.isenabled()
    gc.disable()  # configs hold no cycles; collecting while building 100k dicts costs a third of the time
    try:
        out = [dict(spec.base)]
        for names, rows in groups:  # merge level by level: the last axis varies fastest, as in itertools.product
            parts = [dict(zip(names, row, strict=True)) for row in rows]
            out = [{**config, **part} for config in out for part in parts]
        if spec.exclude:
            out = [config for config, drop in zip(out, dropped, strict=True) if not drop]
        for config in out if copiers else ():
            for key, copy in copiers:
                config[key] = copy(config[key])
    finally:
        if collect:
            gc.enable()
    return out


def _excluded(spec: GridSpec, groups: _Groups, sizes: list[int]) -> bytearray:
    """A flag per cell (product order): 1 where some exclude entry matches."""
    position = {key: (g, j) for g, (names, _) in enumerate(groups) for j, key in enumerate(names)}
    strides = [math.prod(sizes[g + 1:]) for g in range(len(sizes))]
    dropped = bytearray(math.prod(sizes))
    for entry in spec.exclude:
        allowed: dict[int, set[int]] = {}
        for key, want in entry.items():  # a list value means "any of these"
            g, j = position[key]
            options = want if isinstance(want, list) else [want]
            hits = {i for i, row in enumerate(groups[g][1]) if any(_same(row[j], o) for o in options)}
            allowed[g] = allowed[g] & hits if g in allowed else hits
        cells = [0]
        for g, size in enumerate(sizes):
            cells = [c + i * strides[g] for c in cells for i in sorted(allowed.get(g, range(size)))]
        for c in cells:
            dropped[c] = 1
    return dropped
