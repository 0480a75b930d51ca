"""A sweep opened once for reading: one Store, the sweep's name checked once, what is read kept.

A report reads the same sweep many times (the results frame for its tables and for each figure, the
curves of a few metrics, which metrics have a curve); through one Sweep it opens the database once
and reads each of those once. runner.results(), curves(), grid_array() and arrays() open a Sweep
for their one call.

    with Sweep("jobs.db", "quickstart") as sweep:
        df = sweep.results()
        points = sweep.points("test_loss")
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError, error_line
from ..npy import from_npy
from ..queue.store import Store

# Public column contract (docs/contracts.md, "Result columns"): these follow the config columns, in this order.
SUMMARY_COLUMNS = ("status", "attempts", "final_train_loss", "final_test_loss", "steps_run", "wall_s",
                   "device", "host", "precision")
CURVE_COLUMNS = ("job_id", "step", "metric", "value")
_JOB_COLUMNS = {"job_id", "sweep", "status", "attempts", "error"}  # never taken from a summary
# where each job's submit came from (runner.provenance), as result columns: name -> provenance key
PROVENANCE_COLUMNS = {"git_commit": "git_commit", "git_dirty": "git_dirty", "git_diff_sha256": "git_diff_sha256",
                      "submit_host": "host", "submit_command": "command"}


class Sweep:
    """One sweep of a database, open for reading until close() (or the end of a `with` block).

    name None: the database's only sweep, a UserError naming the sweeps when it holds several or
    none; every_sweep=True with name None reads every sweep of the database at once (what
    runner.results(db) does), and then `name` is None. An unknown name is a NoSuchSweep.
    Frames handed out are copies: change them freely.
    """

    def __init__(self, db: str, name: str | None = None, *, every_sweep: bool = False) -> None:
        self.db = db
        self.store = Store(db)
        self.shown = self.store.shown  # the database as it may be printed (no password)
        try:
            self.name = self._resolve(name, every_sweep)
        except BaseException:
            self.store.close()
            raise
        self._results: pd.DataFrame | None = None
        self._hashable: pd.DataFrame | None = None
        self._points: dict[tuple[str, ...] | None, pd.DataFrame] = {}  # by metric names; None: every metric
        self._configs: dict[str, list] | None = None
        self._axes: list[str] | None = None

    def _resolve(self, name: str | None, every_sweep: bool) -> str | None:
        """The sweep to read: the one named, the only one, or None for every sweep."""
        if name is not None:
            self.store.check_sweep(name)  # NoSuchSweep, naming the sweeps there
            return name
        if every_sweep:
            return None
        known = self.store.sweeps()
        if len(known) != 1:
            choices = ", ".join(known) if known else "none yet: run `runner submit` first"
            raise UserError(f"{self.shown} holds {len(known)} sweeps: name one with --sweep ({choices})")
        return known[0]

    def close(self) -> None:
        self.store.close()

    def axes(self) -> list[str] | None:
        """The keys the sweep's grids vary (recorded at each submit); None when unknown (a sweep
        submitted by an older runner, or every sweep of the database at once)."""
        if self._axes is None and self.name is not None:
            self._axes = self.store.sweep_axes(self.name)
        return None if self._axes is None else list(self._axes)

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sweep({'every sweep' if self.name is None else repr(self.name)} in {self.shown})"

    # --- jobs ------------------------------------------------------------------------------------
    def results(self, *, hashable: bool = False) -> pd.DataFrame:
        """One row per job: job_id, sweep, config columns, status, attempts, summary values, error
        (see runner.results). hashable: list and dict config values as compact JSON text, so that
        plots and reports can group by them."""
        if self._results is None:
            table = self.store.job_table(self.name)
            ids = {i for i in table["submission"] if i is not None}
            self._results = _frame(table, self.store.submission_rows(ids=sorted(ids)) if ids else [])
        if not hashable:
            return self._results.copy()
        if self._hashable is None:
            df = self._results.copy()
            for col in config_columns(df):
                if df[col].map(lambda v: isinstance(v, (list, tuple, dict))).any():
                    df[col] = df[col].map(_hashable)
            self._hashable = df
        return self._hashable.copy()

    def arrays(self, job_id: int, name: str) -> dict[int, np.ndarray]:
        """A grab's arrays for one job (of any sweep), by step; name is the grab's name (a
        `module:function` path works too)."""
        self.store.job_status(job_id)  # UserError for an unknown job
        rows = self.store.array_rows(job_id, name)
        if not rows:
            known = [r["name"] for r in self.store.array_summary(job_id)]
            short = name.rpartition(":")[2]
            if short not in known:
                there = ", ".join(known) if known else "none (the job has not finished, or grabbed nothing)"
                raise UserError(f"job {job_id} has no array {name!r}; arrays there: {there}")
            rows = self.store.array_rows(job_id, short)
        return {step: from_npy(data) for _, step, data in rows}

    # --- metric series ---------------------------------------------------------------------------
    def points(self, metrics: Sequence[str] | str | None = None,
               job_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """Metric points as job_id, step, metric, value (float), ordered by job, metric and step.
        metrics and job_ids narrow the selection; whole-sweep reads are kept, and once every
        metric has been read, a few metrics are picked from it instead of read again."""
        names = _names(metrics)
        key = None if names is None else tuple(names)
        if job_ids is not None:
            return self._read_points(names, job_ids)
        if key not in self._points:
            every = self._points.get(None)
            self._points[key] = (self._read_points(names, None) if every is None
                                 else every[every.metric.isin(names)].reset_index(drop=True))
        return self._points[key].copy()

    def _read_points(self, names: list[str] | None, job_ids: Sequence[int] | None) -> pd.DataFrame:
        rows = self.store.metric_rows(self.name, job_ids=job_ids, names=names)
        points = pd.DataFrame.from_records(rows, columns=list(CURVE_COLUMNS))
        points["value"] = points["value"].astype(float)
        return points

    def curves(self, metrics: Sequence[str] | str | None = None,
               job_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """points() with each job's sweep and config columns joined on (see runner.curves); a config
        key named like a curve or summary column is kept as `<key>_config`."""
        points = self.points(metrics, job_ids)
        table = self._config_table() if job_ids is None else self.store.config_table(self.name, job_ids=job_ids)
        configs = _config_frame(table, {*CURVE_COLUMNS, *SUMMARY_COLUMNS, *_JOB_COLUMNS})
        rows = pd.Index(table["job_id"]).get_indexer(points["job_id"])
        joined = configs.iloc[rows].reset_index(drop=True)
        sweeps = pd.Series(np.asarray(table["sweep"], dtype=object)[rows], name="sweep")
        return pd.concat([points, sweeps, joined], axis=1)

    def _config_table(self) -> dict[str, list]:
        """Every job's id, sweep and config (JSON text), read once."""
        if self._configs is None:
            self._configs = self.store.config_table(self.name)
        return self._configs

    def metrics(self) -> list[str]:
        """The names of the metrics recorded in the sweep, sorted."""
        return sorted(set(self.points().metric))

    def busiest_metric(self) -> str:
        """The metric recorded at the most steps (losses first among equals): what a curve shows by
        default. train_loss of online training is recorded once, test_loss at every evaluation."""
        steps = self.points().groupby("metric").step.nunique()
        if steps.empty:
            return "train_loss"
        return min(steps.items(), key=lambda item: (-item[1], not item[0].endswith("loss"), item[0]))[0]

    def curve_metrics(self) -> list[str]:
        """The metrics recorded at more than one step, losses first: those a curve can show."""
        steps = self.points().groupby("metric").step.nunique()
        names = [m for m, n in steps.items() if n > 1]
        return sorted(names, key=lambda m: (not m.endswith("loss"), m))


@contextlib.contextmanager
def opened(db: str | Sweep, name: str | None = None) -> Iterator[Sweep]:
    """One sweep to draw or report on: a Sweep given is used as it is (and left open: its caller
    closes it); a database is opened as Sweep(db, name) for the block and closed after it."""
    if not isinstance(db, Sweep):
        with Sweep(db, name) as sweep:
            yield sweep
        return
    if db.name is None:
        raise UserError(f"this Sweep reads every sweep of {db.shown}; figures and reports show one: "
                        "open it with a sweep name")
    if name is not None and name != db.name:
        raise UserError(f"this Sweep is {db.name!r}, not {name!r}: pass sweep=None with an open Sweep")
    yield db


def config_columns(df: pd.DataFrame) -> list[str]:
    """The config keys: the columns between `sweep` and `status` (docs/contracts.md, "Result columns")."""
    cols = list(df.columns)
    return cols[cols.index("sweep") + 1:cols.index("status")]


def _names(metrics: Sequence[str] | str | None) -> list[str] | None:
    return [metrics] if isinstance(metrics, str) else None if metrics is None else list(metrics)


def _hashable(value: Any) -> Any:
    """Lists and dicts (e.g. monomials) become compact JSON text, so they can be grouped and shown."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _json_objects(texts: Sequence[str | None]) -> list[dict]:
    """Parse a column of JSON objects (None as {}) with one json.loads call: much faster than one per row."""
    return json.loads("[" + ",".join(t or "{}" for t in texts) + "]")


def _config_frame(table: dict[str, list], reserved: set[str]) -> pd.DataFrame:
    """The configs as columns, a key named like a reserved column kept as `<key>_config`."""
    configs = pd.DataFrame(_json_objects(table["config"]), index=pd.RangeIndex(len(table["job_id"])))
    return configs.rename(columns={k: f"{k}_config" for k in configs.columns if k in reserved})


def _frame(table: dict[str, list], submissions: Sequence[dict[str, Any]] = ()) -> pd.DataFrame:
    """The results frame from Store.job_table columns, built column by column (no per-row pandas work);
    `submissions`: the rows of the submits its jobs came from (their provenance columns)."""
    n = len(table["job_id"])
    summaries = pd.DataFrame(_json_objects(table["summary"]), index=pd.RangeIndex(n))
    summaries = summaries.drop(columns=[c for c in summaries.columns if c in _JOB_COLUMNS])
    if "steps" in summaries.columns:  # results written before the column was renamed: `steps` then
        old = summaries.pop("steps")
        summaries["steps_run"] = summaries["steps_run"].fillna(old) if "steps_run" in summaries.columns else old
    configs = _config_frame(table, set(SUMMARY_COLUMNS) | set(summaries.columns) | _JOB_COLUMNS | set(PROVENANCE_COLUMNS))
    columns: dict[str, Any] = {"job_id": table["job_id"], "sweep": table["sweep"], **configs}
    columns.update(status=table["status"], attempts=table["attempts"])
    for name in SUMMARY_COLUMNS[2:]:
        columns[name] = summaries[name] if name in summaries.columns else [None] * n
    for name in ("device", "host"):  # a job without a results row yet: where it runs (or ran) last
        columns[name] = pd.Series(columns[name], dtype=object).where(pd.notna(columns[name]), table[name])
    extra = sorted(k for k in summaries.columns if k not in SUMMARY_COLUMNS)
    columns.update({k: summaries[k] for k in extra})
    if submissions:  # (jobs submitted before runner kept provenance have none)
        by_id = {row["id"]: row["provenance"] for row in submissions}
        known = [by_id.get(i, {}) for i in table["submission"]]
        columns.update({name: [p.get(key) for p in known] for name, key in PROVENANCE_COLUMNS.items()})
    columns["error"] = [error_line(e) if e else None for e in table["error"]]
    return pd.DataFrame(columns, index=pd.RangeIndex(n))
