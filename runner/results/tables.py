"""A sweep's results shaped for plots and reports: varying keys, checked axes, group statistics.

Shared by runner.results.plots and runner.results.report so both pick axes, check user input and
average the same way. The frames come from a Sweep (runner.results.sweep), read once.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from .sweep import Sweep, config_columns

SEED_KEYS = ("seed", "data_seed", "model_seed")  # averaged over, never plotted as an axis when another key varies


def levels(series: pd.Series) -> list[Any]:
    """Distinct values in a readable order: numbers ascending, then others as the grid lists them, None last."""
    distinct = list(dict.fromkeys(series.tolist()))
    numbers = sorted(v for v in distinct if is_number(v))
    others = [v for v in distinct if not is_number(v) and not _missing(v)]
    return numbers + others + ([None] if any(_missing(v) for v in distinct) else [])


def is_number(v: Any) -> bool:
    """A real number (not a bool, not NaN): such keys sort numerically and can take a log axis."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and not _missing(v)


def _missing(v: Any) -> bool:
    """None or NaN: a key some jobs do not set."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def varying_keys(df: pd.DataFrame) -> list[str]:
    """Config keys taking more than one value in the sweep, in grid order."""
    return [c for c in config_columns(df) if len(levels(df[c])) > 1]


def axis_keys(df: pd.DataFrame) -> list[str]:
    """Varying keys worth an axis: all but the seed keys."""
    return [k for k in varying_keys(df) if k not in SEED_KEYS]


def outside_keys(sweep: Sweep, df: pd.DataFrame) -> list[str]:
    """Config keys whose values differ between jobs although no grid of the sweep varies them (a base
    value changed between submits: `base.steps=500` resubmitted). Such jobs are different experiments,
    so figures and tables draw them apart instead of averaging them. Seed keys never count (more seeds
    are more of the same experiment); [] when the sweep's axes are unknown."""
    axes = sweep.axes()
    if axes is None:
        return []
    known = set(axes) | {f"{a}_config" for a in axes} | set(SEED_KEYS)
    return [k for k in varying_keys(df) if k not in known]


def outside_note(df: pd.DataFrame, keys: Sequence[str], then: str = ": drawn apart") -> str:
    """'jobs differ in steps (300, 500), which no grid of the sweep varies: drawn apart'."""
    shown = "; ".join(f"{k} ({', '.join(fmt(v) for v in levels(df[k])[:6])})" for k in keys)
    return f"jobs differ in {shown}, which no grid of the sweep varies{then}"


def combinations(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """The distinct value tuples of these keys in the frame, each key in `levels` order (() when none)."""
    if not keys:
        return [()]
    present = set(map(tuple, df[list(keys)].astype(object).where(df[list(keys)].notna(), None).itertuples(index=False)))
    ordered = [()]
    for key in keys:
        ordered = [(*head, v) for head in ordered for v in levels(df[key])]
    return [combo for combo in ordered if combo in present]


def rows_at(table: pd.DataFrame, keys: Sequence[str], values: Sequence[Any]) -> pd.DataFrame:
    """The rows of a table where each key has its value (None matches a missing value)."""
    for key, value in zip(keys, values):
        table = table[table[key].isna()] if value is None else table[table[key] == value]
    return table


def check_axis(df: pd.DataFrame, key: str, sweep: str, *, numeric: bool = False) -> str:
    """The column for a user-named axis; a user error when unknown, constant or (if asked) not numeric."""
    cols, varying = config_columns(df), varying_keys(df)
    choices = ", ".join(varying) or "none: the sweep varies no key"
    if key not in cols and f"{key}_config" in cols:  # config keys that collide with summary columns
        key = f"{key}_config"
    if key not in cols:
        raise UserError(f"no config key {key!r} in sweep {sweep!r}: pick one of its varying keys ({choices})")
    values = levels(df[key])
    if len(values) < 2:
        raise UserError(f"{key!r} has one value ({fmt(values[0] if values else None)}) in sweep {sweep!r}: "
                        f"pick a key that varies ({choices})")
    if numeric and not all(is_number(v) for v in values):
        raise UserError(f"{key!r} is not numeric in sweep {sweep!r}: pick a numeric varying key ({choices})")
    return key


def value_columns(df: pd.DataFrame) -> list[str]:
    """Summary values worth averaging: final losses and accuracies, then step_at_<threshold>."""
    finals = [c for c in df.columns if c.startswith("final_")]
    steps = sorted((c for c in df.columns if c.startswith("step_at_")), key=_threshold, reverse=True)
    return finals + steps


def _threshold(col: str) -> float:
    """The T of step_at_T, to order thresholds from loose to tight."""
    try:
        return float(col.removeprefix("step_at_"))
    except ValueError:
        return math.inf


def check_value(df: pd.DataFrame, value: str, sweep: str) -> pd.Series:
    """A summary column as floats (NaN where missing); a user error when unknown or never set. A grab's
    name stands for its final value (hessian_trace: final_hessian_trace)."""
    if (value not in df.columns or value in config_columns(df)) and f"final_{value}" in df.columns:
        value = f"final_{value}"
    if value not in df.columns or value in config_columns(df):
        raise UserError(f"no summary column {value!r} in sweep {sweep!r}: pick one of "
                        f"({', '.join(value_columns(df)) or 'none yet: run `runner workers` first'})")
    numbers = pd.to_numeric(df[value], errors="coerce").astype(float)
    if not np.isfinite(numbers).any():
        raise UserError(f"{value!r} has no finite value in sweep {sweep!r}: "
                        "run `runner workers` until jobs finish, or pick another column")
    return numbers


def long_curves(sweep: Sweep, metric: str, df: pd.DataFrame) -> pd.DataFrame:
    """One metric's finite points (job_id, step, value) with the job's config columns joined on."""
    points = sweep.points([metric])
    if not len(points):
        known = sweep.metrics()
        raise UserError(f"no metric {metric!r} in sweep {sweep.name!r}: pick one of "
                        f"({', '.join(known) or 'none yet: run `runner workers` first'})")
    points = points[np.isfinite(points.value.astype(float))]
    return points.merge(df[["job_id", *config_columns(df)]], on="job_id", how="inner")


def stats(frame: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, std (0 for one job), min, max and count of the finite values per group of keys."""
    finite = frame[np.isfinite(frame[value].astype(float))]
    grouped = finite.groupby(list(keys), dropna=False, sort=False)[value]
    out = grouped.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def averaged_note(df: pd.DataFrame, shown: Iterable[str]) -> str:
    """Which varying keys a figure averages over, e.g. 'mean over seed (2 values), width (3 values)'."""
    over = [k for k in varying_keys(df) if k not in set(shown)]
    if not over:
        return "one job per point"
    return "mean over " + ", ".join(f"{k} ({len(levels(df[k]))} values)" for k in over)


def fmt(value: Any) -> str:
    """A config value as a short label: 0.003, 256, True, adam."""
    if _missing(value):
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def fmt_number(value: float, digits: int = 4) -> str:
    """A summary value with a few significant digits ('' when missing)."""
    if value is None or not np.isfinite(value):
        return ""
    return f"{value:.{digits}g}"
