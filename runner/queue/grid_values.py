"""Grid files as YAML and the forms their values take: a safe loader that refuses repeated keys,
mappings and lists checked with one-line errors, axis generators ({range: ...}, {linspace: ...},
{logspace: ...}) and the check that every value can be stored as JSON."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from ..errors import UserError
from ..text import did_you_mean

GENERATORS = {"range": "{range: [stop]}, {range: [start, stop]} or {range: [start, stop, step]}",
              "linspace": "{linspace: [start, stop, num]}", "logspace": "{logspace: [start_exp, stop_exp, num]}"}
MAX_CELLS = 1_000_000  # a larger grid (or generated axis) is almost surely a typo
MAX_GRID_BYTES = 1 << 20  # a grid file is a page of YAML; a megabyte is not a grid
MAX_VALUES = 1_000_000    # values in a grid once YAML aliases and merge keys are expanded (as MAX_CELLS)
MAX_CONFIG_BYTES = 256 << 10  # one job's config as JSON: a few hundred bytes, a long monomials list some KiB
MAX_JOB_VALUES = 100_000  # values in one job's config (expanded): checked before the grid is expanded
MAX_MERGED = 100_000      # entries YAML merge keys (<<) may copy in one file
MAX_DEPTH = 32            # nesting of mappings and lists
INT64 = (-(1 << 63), (1 << 63) - 1)  # what a database integer holds (SQLite, PostgreSQL BIGINT)

# YAML 1.1 reads 1e-3 (no dot, or no exponent sign) as a string; read it as a float, as YAML 1.2 does.
_FLOAT_RE = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping, reads 1e-3 as a float, and stops merge
    keys (`<<: *a`) that copy more than MAX_MERGED entries (nested merges double at each level)."""

    merged = 0

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        before = len(node.value)
        super().flatten_mapping(node)
        self.merged += max(0, len(node.value) - before)
        if self.merged > MAX_MERGED:
            raise yaml.constructor.ConstructorError(
                None, None, f"merge keys (<<) expand to more than {MAX_MERGED:,} entries", node.start_mark)

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


def fail(source: str, msg: str) -> UserError:
    return UserError(f"{source}: " + re.sub(r"\s*\n\s*", " ", msg))


def load_yaml(text: str, source: str, where: str = "") -> Any:
    """Parse YAML text; a UserError for malformed YAML, nesting too deep for the parser, and values
    that expand (through aliases and merge keys) beyond MAX_VALUES or MAX_DEPTH."""
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except RecursionError:
        raise fail(source, f"{where}the YAML nests too deep to read (a grid nests a few levels; at most {MAX_DEPTH})") \
            from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise fail(source, f"{where}malformed YAML{pos}: {e.problem or e.context} (fix the YAML there)") from None
    except yaml.YAMLError as e:
        raise fail(source, f"{where}malformed YAML: {e}") from None
    check_shape(data, source)
    return data


def check_shape(data: Any, source: str) -> None:
    """Refuse data whose expanded size (every alias counted where it is used, as the jobs would hold
    it) passes MAX_VALUES, whose nesting passes MAX_DEPTH, or that contains itself: a few hundred
    bytes of YAML aliases can stand for billions of values."""
    size, depth = expanded_shape(data, source)
    if size > MAX_VALUES:
        raise fail(source, f"the grid expands to more than {MAX_VALUES:,} values (YAML aliases or merge keys "
                           "repeated inside each other?): write the values out, or split the grid")
    if depth > MAX_DEPTH:
        raise fail(source, f"the grid nests deeper than {MAX_DEPTH} levels: a grid nests a few")


def expanded_shape(data: Any, source: str = "<dict>") -> tuple[int, int]:
    """(values, depth) of data as if every shared list or mapping were copied where it is used (keys
    and scalars count one each). Computed once per distinct container, bottom-up, so a bomb costs as
    little as it is long; a container holding itself is refused."""
    sizes: dict[int, tuple[int, int]] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, children_done = stack.pop()
        if not isinstance(value, (Mapping, list, tuple)):
            continue
        key = id(value)
        children = list(value.values()) if isinstance(value, Mapping) else list(value)
        if children_done:
            size, depth = len(value) if isinstance(value, Mapping) else 0, 0
            for child in children:
                s, d = sizes.get(id(child), (1, 0)) if isinstance(child, (Mapping, list, tuple)) else (1, 0)
                size, depth = min(size + s, MAX_VALUES + 1), max(depth, d)
            sizes[key] = (size + 1, depth + 1)
            visiting.discard(key)
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise fail(source, "the grid contains itself (a YAML alias inside its own anchor): write the values out")
        visiting.add(key)
        stack.append((value, True))
        stack.extend((c, False) for c in children if isinstance(c, (Mapping, list, tuple)) and id(c) not in sizes)
    return sizes.get(id(data), (1, 0))


def kind_of(value: Any) -> str:
    kinds = {list: "a list", dict: "a mapping", str: "a string", type(None): "null", int: "an integer"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def mapping(value: Any, where: str, what: str, source: str) -> dict[str, Any]:
    """A copy of a mapping with string keys; None counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(source, f"{where}: must be a mapping of {what}, not {kind_of(value)}")
    for key in value:
        if not isinstance(key, str):
            raise fail(source, f"{where}: key {key!r} is not a string (quote it: '{key}')")
    return dict(value)


def entries(value: Any, where: str, example: str, source: str) -> list[dict[str, Any]]:
    """A list of mappings (zip groups, exclude entries); None counts as empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(source, f"{where}: must be a list of mappings, not {kind_of(value)} (write {where}: [{example}])")
    return [mapping(item, f"{where}[{i}]", "key: value", source) for i, item in enumerate(value)]


def grab_list(value: Any, source: str) -> list[Any]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise fail(source, f"grabs must be a list of names, not {kind_of(value)} (write grabs: [weight_norm])")
    return value


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _generate(kind: str, args: Any, where: str, source: str) -> list[Any]:
    """Values of {range: ...}, {linspace: ...} or {logspace: ...}."""
    arity = (1, 2, 3) if kind == "range" else (3,)
    if not isinstance(args, list) or len(args) not in arity or not all(map(_is_num, args)):
        raise fail(source, f"{where}: {kind} takes a list of {'1, 2 or 3' if kind == 'range' else 3} numbers, "
                            f"got {args!r} (write {GENERATORS[kind]})")
    if kind == "range":
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], 1) if len(args) == 2 else args
        if step == 0:
            raise fail(source, f"{where}: range step must not be 0 (write {GENERATORS[kind]})")
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
            raise fail(source, f"{where}: range {args!r} gives more than {MAX_CELLS:,} values")
        if not values:
            raise fail(source, f"{where}: range {args!r} gives no values (for a falling range use a negative step)")
        return values
    start, stop, num = args
    if not isinstance(num, int) or not 1 <= num <= MAX_CELLS:
        raise fail(source, f"{where}: {kind} num must be a whole number from 1 to {MAX_CELLS:,}, got {num!r}")
    points = [start + (stop - start) * i / (num - 1) for i in range(num - 1)] + [stop] if num > 1 else [start]
    try:  # logspace keeps 12 significant digits: its values span magnitudes, so round(1e-13, 12) would be 0
        floats = ([round(float(p), 12) for p in points] if kind == "linspace"
                  else [float(f"{10.0 ** p:.12g}") for p in points])
    except OverflowError:
        floats = [math.inf]
    if not all(map(math.isfinite, floats)):
        raise fail(source, f"{where}: {kind} {args!r} overflows a float")
    if isinstance(start, int) and isinstance(stop, int) and all(f.is_integer() for f in floats):
        return [int(f) for f in floats]  # integer inputs with whole results stay ints (widths, steps)
    return floats


def is_generator(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in GENERATORS


def axis_values(raw: Any, where: str, source: str) -> list[Any]:
    """An axis entry as a list of values: a list, a generator mapping, or one scalar."""
    if isinstance(raw, (list, tuple)):
        return list(raw)
    if is_generator(raw):
        kind, args = next(iter(raw.items()))
        return _generate(kind, args, where, source)
    if isinstance(raw, Mapping):
        near = did_you_mean(str(next(iter(raw), "")), GENERATORS) if len(raw) == 1 else ""
        hint = f"{near} " if near else ""
        raise fail(source, f"{where}: a mapping is not an axis ({hint}generators are {{range: [...]}}, "
                            "{linspace: [...]}, {logspace: [...]}; to sweep mappings put them in a list: [{...}])")
    if raw is None:
        raise fail(source, f"{where} is empty (give its values, e.g. [1, 2], or write [null] for None)")
    return [raw]


def check_json(value: Any, where: str, source: str) -> None:
    """Raise unless value can be stored as JSON and read back unchanged (integer keys of nested
    mappings become strings in place, as JSON would make them)."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise fail(source, f"{where} is {value}, beyond what a 64-bit integer holds "
                               f"({INT64[0]} to {INT64[1]}): give a smaller number")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(source, f"{where} is {value!r}: NaN and infinity cannot be stored as JSON (use a number)")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", source)
    elif isinstance(value, dict):
        for key in list(value):
            # An integer key ({0: 2}: coordinate 0, degree 2) is stored, as JSON would, as the string '0'.
            if isinstance(key, int) and not isinstance(key, bool) and str(key) not in value:
                value[str(key)] = value.pop(key)
        for key, item in value.items():
            if not isinstance(key, str):
                raise fail(source, f"{where} has key {key!r}, which is not a string (quote it: '{key}')")
            check_json(item, f"{where}.{key}", source)
    else:
        raise fail(source, f"{where} is a {type(value).__name__} ({value!r}), which cannot be stored as JSON "
                            "(use a string, number, boolean, null, list or mapping; in YAML, quote it)")
