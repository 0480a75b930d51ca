"""Grid files (docs/contracts.md, "The grid file"): parse a YAML grid, apply command-line overrides,
validate it, expand it into one flat config per job. User mistakes raise a one-line UserError."""
from __future__ import annotations

import gc
import math
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..hashing import canonical_json
from ..text import did_you_mean
from .grid_values import (
    MAX_CELLS,
    MAX_GRID_BYTES,
    MAX_JOB_VALUES,
    axis_values,
    check_json,
    check_shape,
    entries,
    expanded_shape,
    fail,
    grab_list,
    kind_of,
    load_yaml,
    mapping,
)
from .overrides import override

TOP_KEYS = ("sweep", "description", "tags", "batchfn", "model", "grabs", "members", "base", "grid", "zip", "exclude")
SHORTHANDS = ("batchfn", "model", "grabs", "members")  # shared by every job: copied into base
_CONTAINERS = (list, tuple, dict)


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid: shared values (base), product axes, zip groups and exclusions."""

    sweep: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    zips: list[dict[str, list[Any]]]
    exclude: list[dict[str, Any]]
    source: str
    description: str | None = None  # the sweep's notes, kept with the submit
    tags: tuple[str, ...] = ()
    text: str | None = None         # the grid file's text as submitted (None for a dict)


def load_grid(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> GridSpec:
    """Read and parse a grid file; the sweep name defaults to the file's stem."""
    source = os.fspath(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read forever, a device never end
            raise fail(source, "is not a regular file (a folder, FIFO or device): give a grid file")
        if info.st_size > MAX_GRID_BYTES:
            raise fail(source, f"is {info.st_size:,} bytes; a grid file is at most {MAX_GRID_BYTES:,} "
                               "(generate long axes with {range: ...}, {linspace: ...})")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(source, "file not found (check the path)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise fail(source, f"cannot read the grid file ({getattr(e, 'strerror', None) or e})") from None
    spec = parse_grid(load_yaml(text, source), source, overrides, default_sweep=Path(path).stem, shape_checked=True)
    return replace(spec, text=text)


def parse_grid(data: Mapping[str, Any], source: str = "<dict>", overrides: Sequence[str] = (),
               default_sweep: str | None = None, shape_checked: bool = False) -> GridSpec:
    """Build a GridSpec from loaded YAML data, apply overrides, validate. `shape_checked`: load_yaml
    has bounded the data's size and depth already (a grid file's); a dict from Python is checked here."""
    if data is None:
        raise fail(source, "the grid file is empty (write at least sweep:, base: and grid:)")
    if not shape_checked:  # a dict handed to runner.submit: it may share lists too
        check_shape(data, source)
    if not isinstance(data, Mapping):
        raise fail(source, f"the top level must be a mapping (sweep:, base:, grid:, ...), not {kind_of(data)}")
    for key in data:
        if key not in TOP_KEYS:
            near = did_you_mean(str(key), TOP_KEYS)
            hint = f"{near} " if near else ""
            raise fail(source, f"unknown top-level key {key!r} ({hint}hyperparameters go under base: or grid:; "
                                f"allowed top-level keys: {', '.join(TOP_KEYS)})")
    if not isinstance(data.get("description"), (str, type(None))):
        raise fail(source, f"description must be a string, not {kind_of(data['description'])}")
    tags = data.get("tags") or []
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() and t.isprintable() for t in tags):
        raise fail(source, f"tags must be a list of words (tags: [baseline, muP]), not {data.get('tags')!r}")
    base = mapping(data.get("base"), "base", "hyperparameter: value", source)
    for key in SHORTHANDS:
        if key in data:
            if key in base:
                raise fail(source, f"{key!r} is given both at the top level and in base: (keep one)")
            base[key] = data[key]
    if "grabs" in base:
        base["grabs"] = grab_list(base["grabs"], source)
    grid = mapping(data.get("grid"), "grid", "axis: values", source)
    axes = {key: axis_values(raw, f"grid.{key}", source) for key, raw in grid.items()}
    groups = entries(data.get("zip"), "zip", "{n_train: [256, 1024], batch_size: [256, 1024]}", source)
    zips = [{key: axis_values(raw, f"zip[{i}].{key}", source) for key, raw in group.items()}
            for i, group in enumerate(groups)]
    exclude = entries(data.get("exclude"), "exclude", "{width: 4096, lr: 0.1}", source)
    sweep = default_sweep if data.get("sweep") is None else data["sweep"]
    spec = override(GridSpec(sweep, base, axes, zips, exclude, source, data.get("description"),
                             tuple(dict.fromkeys(t.strip() for t in tags))), overrides)
    _validate(spec)
    return spec


_Groups = list[tuple[tuple[str, ...], list[tuple[Any, ...]]]]  # (keys, rows) per product axis; a zip group is one


def _check_job_size(spec: GridSpec, places: list[tuple[str, str, str, list[Any]]]) -> None:
    """One job holds base and one value of each axis: refuse, before expanding, a grid whose jobs
    could hold more than MAX_JOB_VALUES values (each job would get its own copy of them)."""
    most = expanded_shape(spec.base, spec.source)[0]
    most += sum(max(expanded_shape(v, spec.source)[0] for v in values) for _, _, _, values in places)
    if most > MAX_JOB_VALUES:
        raise fail(spec.source, f"a job of this grid holds up to {most:,} values, more than {MAX_JOB_VALUES:,}: "
                                "shorten its lists (YAML aliases repeated inside each other?)")


def _validate(spec: GridSpec) -> tuple[_Groups, bytearray]:
    """Check every rule (also after overrides); returns the product axes and a dropped-flag per cell."""
    src = spec.source
    if spec.sweep is None:
        raise fail(src, "no sweep name (add 'sweep: NAME' to the grid or pass sweep=NAME)")
    if not isinstance(spec.sweep, str) or not spec.sweep.strip():
        raise fail(src, f"sweep must be a non-empty string, not {spec.sweep!r} "
                         "(write e.g. sweep: lr-width; quote a name that looks like a number)")
    if not spec.sweep.isprintable():  # it is printed by status, jobs and reports: no escape sequences
        raise fail(src, f"sweep name {spec.sweep!r} holds control characters: use letters, digits and punctuation")
    check_json(spec.base, "base", src)
    owner: dict[str, str] = {}  # an axis may override a base value; two axes may not share a key
    places = [(f"grid.{key}", "grid:", key, values) for key, values in spec.axes.items()]
    for i, group in enumerate(spec.zips):
        if not group:
            raise fail(src, f"zip[{i}] is empty (delete it)")
        places += [(f"zip[{i}].{key}", f"zip group {i}", key, values) for key, values in group.items()]
    for where, place, key, values in places:
        if key in owner:
            raise fail(src, f"{key!r} is set in both {owner[key]} and {place}; a hyperparameter goes in one "
                             f"place only (remove it from {owner[key]})")
        owner[key] = place
        if not isinstance(values, list) or not values:
            raise fail(src, f"{where} has no values (give at least one, e.g. {key}: [1])")
        check_json(values, where, src)
    for i, group in enumerate(spec.zips):
        lengths = {key: len(values) for key, values in group.items()}
        if len(set(lengths.values())) > 1:
            told = ", ".join(f"{key} has {n}" for key, n in lengths.items())
            raise fail(src, f"zip[{i}] lists have unequal lengths ({told}); give each list in a group the same length")
    names = axis_names(spec)
    for i, entry in enumerate(spec.exclude):
        if not entry:
            raise fail(src, f"exclude[{i}] is empty (delete it)")
        for key in (key for key in entry if key not in names):
            why = did_you_mean(str(key), names) or f"the axes are: {', '.join(names) or 'none'}"
            why = "it is in base:, the same in every job" if key in spec.base else why
            raise fail(src, f"exclude[{i}] names {key!r}, which is not a grid or zip axis ({why})")
        check_json(entry, f"exclude[{i}]", src)
    _check_job_size(spec, places)
    groups = [((key,), [(v,) for v in values]) for key, values in spec.axes.items()]
    groups += [(tuple(group), list(zip(*group.values(), strict=True))) for group in spec.zips]
    for names, rows in groups:
        seen: set[str] = set()
        for row in rows:
            if (text := canonical_json(row)) in seen:
                value = row[0] if len(row) == 1 else dict(zip(names, row, strict=True))
                raise fail(src, f"{'/'.join(names)}: {value!r} appears twice, which would make duplicate jobs "
                                 "(remove one)")
            seen.add(text)
    sizes = [len(rows) for _, rows in groups]
    total = math.prod(sizes)
    if total > MAX_CELLS:
        raise fail(src, f"the grid has {total:,} combinations, more than {MAX_CELLS:,} (shrink an axis)")
    dropped = _excluded(spec, groups, sizes)
    if all(dropped):
        raise fail(src, f"exclude removes all {total} combinations (loosen exclude: or add axis values)")
    return groups, dropped


def apply_overrides(spec: GridSpec, overrides: Sequence[str]) -> GridSpec:
    """Apply Hydra-style KEY=VALUE overrides in order; returns a new, validated spec."""
    spec = override(spec, overrides)
    _validate(spec)
    return spec


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
    columns: dict[str, list[Any]] = {key: [value] for key, value in spec.base.items()}
    for names, rows in groups:  # a key both in base and on an axis takes the axis's values
        columns.update({key: [row[j] for row in rows] for j, key in enumerate(names)})
    copiers = [(key, copy) for key, values in columns.items() if (copy := _copier(values))]
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
