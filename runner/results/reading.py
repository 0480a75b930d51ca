"""Read a sweep back: one row per job as a pandas DataFrame, long-form curves with each job's config,
a summary value laid out on grid axes (masked where missing), grab arrays. Read-only.

Each function opens the database once for its call, through a Sweep (runner.results.sweep); to read
one sweep many times, open a Sweep and keep it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from .sweep import SUMMARY_COLUMNS, Sweep

__all__ = ["SUMMARY_COLUMNS", "GridArray", "arrays", "curves", "export", "grid_array", "results"]


def results(db: str = "jobs.db", sweep: str | None = None) -> pd.DataFrame:
    """One row per job: job_id, sweep, config columns, status, attempts, summary values, error.

    A config key that collides with a summary column (e.g. `steps`, which in the summary is the
    number of steps run) is kept as `<key>_config`. `device` and `host` of a job still running (or
    back in the queue) are those of its latest claim. `error` is the one line that says what failed.
    sweep None: every sweep of the database.
    """
    with Sweep(db, sweep, every_sweep=True) as opened:
        return opened.results()


def curves(db: str = "jobs.db", sweep: str | None = None, metrics: Sequence[str] | str | None = None,
           job_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Long-form metric series, one row per point: job_id, step, metric, value, then the job's sweep
    and config columns (joined), so points group by any grid axis: `df.groupby(["lr", "step"])`.

    metrics and job_ids narrow the selection (a name no job recorded gives no rows). A config key
    named like a curve or summary column is kept as `<key>_config`, as in results().
    """
    with Sweep(db, sweep, every_sweep=True) as opened:
        return opened.curves(metrics, job_ids)


def arrays(db: str, job_id: int, name: str) -> dict[int, np.ndarray]:
    """A grab's arrays for one job, by step; name is the grab's name (a `module:function` path works too)."""
    with Sweep(db, every_sweep=True) as opened:
        return opened.arrays(job_id, name)


@dataclass(frozen=True)
class GridArray:
    """A summary value laid out on grid axes.

    values[i, j, ...] is the value of the job whose axes[0] is coords[axes[0]][i], axes[1] is
    coords[axes[1]][j], ...; masked where no job has those coordinates or the job has no such value
    (failed, diverged, still pending). job_ids has the same shape and mask where there is no job.
    coords lists each axis's values sorted (numbers first); list values appear as their JSON text.
    """
    values: np.ma.MaskedArray
    job_ids: np.ma.MaskedArray
    axes: tuple[str, ...]
    coords: dict[str, list]
    value: str

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape


def _sort_key(value: Any) -> tuple:
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, str(value))


def _config_column(df: pd.DataFrame, key: str, what: str) -> str:
    config = ["sweep", *df.columns[2:df.columns.get_loc("status")]]
    for column in (key, f"{key}_config"):
        if column in config:
            return column
    raise UserError(f"{what} {key!r} is not a config key of these jobs; config keys: {', '.join(config[1:]) or 'none'}")


def _hashable(df: pd.DataFrame, column: str) -> pd.Series:
    """A column whose list or dict values (unhashable) are replaced by their JSON text."""
    series = df[column]
    if series.dtype != object:  # numbers or strings: nothing to replace
        return series
    return series.map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)


def grid_array(db: str = "jobs.db", sweep: str | None = None, value: str = "final_test_loss",
               axes: Sequence[str] = (), where: Mapping[str, Any] | None = None) -> GridArray:
    """One summary value (default final_test_loss) as a masked array indexed by the sorted distinct
    values of each axis (config keys, or `sweep`), for heatmaps and means over seeds.

    where={"key": value or [values]} keeps only matching jobs first. Jobs that lack an axis key are
    left out. Several jobs in one cell (a key not in axes varies) is a UserError naming those keys.
    """
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    if not axes:
        raise UserError("grid_array needs axes: config keys such as axes=['lr', 'seed']")
    if len(set(axes)) != len(axes):
        raise UserError(f"grid_array axes {list(axes)} name a key twice")
    df = results(db, sweep)
    columns = [_config_column(df, a, "axis") for a in axes]
    summary = [c for c in df.columns[df.columns.get_loc("attempts"):]
               if c not in ("device", "host", "precision", "error")]
    if value not in summary and f"final_{value}" in summary:  # a grab's name: its last value
        value = f"final_{value}"
    if value not in summary:
        raise UserError(f"no summary value {value!r} in these jobs; values: {', '.join(summary)}")
    for key, wanted in (where or {}).items():
        column = _config_column(df, key, "where key")
        choices = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        df = df[_hashable(df, column).isin([json.dumps(c, sort_keys=True) if isinstance(c, (list, dict)) else c
                                            for c in choices])]
    df = df.dropna(subset=columns).reset_index(drop=True)
    keys = {c: _hashable(df, c) for c in columns}
    coords = {a: sorted(set(keys[c].tolist()), key=_sort_key) for a, c in zip(axes, columns)}
    shape = tuple(len(coords[a]) for a in axes)
    codes = [pd.Index(coords[a], dtype=object).get_indexer(keys[c].astype(object)) for a, c in zip(axes, columns)]
    flat = np.ravel_multi_index(codes, shape) if len(df) else np.zeros(0, dtype=np.intp)
    crowded = np.bincount(flat, minlength=int(np.prod(shape)))
    if len(df) and crowded.max() > 1:
        _too_many_jobs(df, flat, crowded, axes, columns)
    try:
        numbers = pd.to_numeric(df[value], errors="raise").astype(float).to_numpy()
    except (TypeError, ValueError):
        raise UserError(f"summary value {value!r} is not numeric (e.g. {df[value].dropna().iloc[0]!r})") from None
    data = np.full(shape, np.nan)
    data.flat[flat] = numbers
    ids = np.full(shape, -1, dtype=np.int64)
    ids.flat[flat] = df["job_id"].to_numpy()
    return GridArray(values=np.ma.masked_invalid(data), job_ids=np.ma.masked_equal(ids, -1), axes=axes,
                     coords=coords, value=value)


def _too_many_jobs(df: pd.DataFrame, flat: np.ndarray, crowded: np.ndarray, axes: tuple[str, ...],
                   columns: list[str]) -> None:
    """Raise the UserError for cells holding several jobs, naming the keys that vary inside them."""
    rows = crowded[flat] > 1
    others = [c for c in ["sweep", *df.columns[2:df.columns.get_loc("status")]] if c not in columns]
    inside = pd.DataFrame({c: _hashable(df[rows], c) for c in others})
    spread = inside.groupby(flat[rows]).nunique(dropna=False).max() if others else pd.Series(dtype=int)
    varying = list(spread[spread > 1].index)
    cells = int((crowded > 1).sum())
    keys = ", ".join(varying) if varying else "no config key (same config in several jobs)"
    verb = "vary" if len(varying) > 1 else "varies"
    example = varying[0] if varying else "key"
    raise UserError(f"{cells} cells of axes {list(axes)} hold several jobs: {keys} also {verb} there; "
                    f"add them to axes=[...] or keep one value with where={{{example!r}: ...}}")


def export(df: pd.DataFrame, path: str) -> None:
    """Write a results frame as .csv, .parquet or .json (by the file's suffix)."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".json"):
        raise UserError(f"cannot write {path!r}: the file name must end in .csv, .parquet or .json")
    parent = Path(path).parent
    if not parent.exists():
        raise UserError(f"cannot write {path!r}: folder {str(parent)!r} does not exist")
    if suffix == ".json":
        df.to_json(path, orient="records", indent=1)
        return
    flat = df.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, (list, dict))).any():
            flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    if suffix == ".csv":
        flat.to_csv(path, index=False)
    else:
        try:
            flat.to_parquet(path, index=False)
        except ImportError:
            raise UserError("writing parquet needs pyarrow: pip install pyarrow, or write .csv") from None
