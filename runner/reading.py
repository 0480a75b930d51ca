"""Read a sweep back: one row per job as a pandas DataFrame, long-form curves, grab arrays."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .npy import from_npy
from .errors import UserError
from .store import Store

# Public column contract (DESIGN section 8): these follow the config columns, in this order.
SUMMARY_COLUMNS = ("status", "attempts", "final_train_loss", "final_test_loss", "steps", "wall_s",
                   "device", "host", "precision")


def _frame(rows: list[dict]) -> pd.DataFrame:
    config_keys: dict[str, None] = {}
    summary_keys: dict[str, None] = {}
    for row in rows:
        config_keys.update(dict.fromkeys(row["config"]))
        summary_keys.update(dict.fromkeys(row["summary"] or {}))
    taken = set(SUMMARY_COLUMNS) | set(summary_keys) | {"job_id", "sweep", "error"}
    rename = {k: f"{k}_config" for k in config_keys if k in taken}
    records = []
    for row in rows:
        summary = row["summary"] or {}
        rec = {"job_id": row["job_id"], "sweep": row["sweep"]}
        rec.update({rename.get(k, k): v for k, v in row["config"].items()})
        rec.update({"status": row["status"], "attempts": row["attempts"]})
        rec.update(summary)
        error = row.get("error")
        rec["error"] = error.strip().splitlines()[-1] if error else None
        records.append(rec)
    extra = sorted(k for k in summary_keys if k not in SUMMARY_COLUMNS)
    columns = ["job_id", "sweep", *[rename.get(k, k) for k in config_keys], *SUMMARY_COLUMNS, *extra, "error"]
    return pd.DataFrame.from_records(records, columns=columns)


def results(db: str = "jobs.db", sweep: str | None = None) -> pd.DataFrame:
    """One row per job: job_id, sweep, config columns, status, attempts, summary values, error.

    A config key that collides with a summary column (e.g. `steps`, which in the summary is the
    number of steps run) is kept as `<key>_config`.
    """
    store = Store(db)
    try:
        if sweep is not None and sweep not in store.sweeps():
            raise UserError(f"no sweep {sweep!r} in {store.shown}; known: {', '.join(store.sweeps()) or 'none'}")
        return _frame(store.result_rows(sweep))
    finally:
        store.close()


def curves(db: str = "jobs.db", sweep: str | None = None, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Long-form metric series: job_id, step, metric, value."""
    store = Store(db)
    try:
        rows = store.metric_rows(sweep, names=metrics)
    finally:
        store.close()
    return pd.DataFrame.from_records(rows, columns=["job_id", "step", "metric", "value"])


def arrays(db: str, job_id: int, name: str) -> dict[int, np.ndarray]:
    """A grab's arrays for one job, by step."""
    store = Store(db)
    try:
        return {step: from_npy(data) for _, step, data in store.array_rows(job_id, name)}
    finally:
        store.close()


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
