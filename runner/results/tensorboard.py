"""Write a sweep as TensorBoard runs, so that TensorBoard's Scalars and HParams tabs work on a sweep.

    DIR/runner-export.json                what was exported (sweep, database, runs): marks DIR as ours
    DIR/events.out.tfevents.*             the hparams experiment: the swept keys with their domains, the metrics
    DIR/job-000123/events.out.tfevents.*  one job: its swept config values (hparams session start), every
                                          curve point (tag: the metric, step: the step), its numeric summary
                                          values (tags summary/<column>), how it ended (session end)

Runs are named job-<id>, the id zero-padded to six digits so they sort by id: the id is what `runner
show` takes, and the name stays short and unique however many keys vary (the HParams tab shows each
run's values; a name made of the axes would hold list values and long floats). Values are float32
scalars (simple_value), as TensorBoard's own summaries write them: float64 tensors were tried, and
the data server TensorBoard starts by default showed none of them.

Finished jobs (done, diverged, failed) are exported with what they have; pending, running and cancelled
jobs are skipped and counted. The runs are written into a hidden folder beside DIR that takes DIR's
place at the end: a DIR holding an earlier export is replaced whole (only with overwrite=True), a DIR
holding anything else is refused; old and new runs are never mixed, and DIR never holds half a write.

Speed: the curves are read in one query, and the event files written by runner.results.tfevents
(each tag's message serialized once, checksums by numpy), not by torch's SummaryWriter, which took 4
ms a job on 2 CPU cores (40 s for 10,000 jobs). benchmarks/export_tensorboard.py measures it.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..queue.states import JobStatus
from .sweep import PROVENANCE_COLUMNS, Sweep
from .tables import varying_keys
from .tfevents import Events, Framer, float32, load

__all__ = ["MARKER", "Exported", "export_tensorboard"]

MARKER = "runner-export.json"
EXPORTED = (JobStatus.DONE.value, JobStatus.DIVERGED.value, JobStatus.FAILED.value)  # jobs with an outcome
BATCH = 1000  # jobs whose records are checksummed together (about 6 MB of records at 80 points a job)
NOT_METRICS = {"status", "attempts", "error", *PROVENANCE_COLUMNS}


@dataclass(frozen=True)
class Exported:
    """What an export wrote: `runs` run folders of sweep `sweep` into `output` (`bytes` in all);
    `skipped`: the jobs left out (not finished), by status."""
    output: Path
    sweep: str
    runs: int
    skipped: dict[str, int]
    bytes: int


def export_tensorboard(db: str, output: str | os.PathLike[str], sweep: str | None = None, *,
                       overwrite: bool = False) -> Exported:
    """Write each finished job of a sweep (None: the database's only sweep) as a TensorBoard run under
    `output`, with the hparams experiment at its top (see the module doc). overwrite: replace an
    earlier export there. A UserError when tensorboard is missing, the sweep unknown or `output` taken."""
    tb = load()
    out = Path(os.path.abspath(output))  # a name and a parent even for "runs/.." or "."
    with Sweep(db, sweep) as opened:
        _check_output(out, str(output), overwrite)
        df = opened.results(hashable=True)
        hparams = _hparams(df, opened.axes())
        points = opened.points()
        name, shown = str(opened.name), opened.shown
    finished = np.flatnonzero(df.status.isin(EXPORTED).to_numpy())
    skipped = {str(k): int(v) for k, v in df.status[~df.status.isin(EXPORTED)].value_counts().items()}
    if not len(finished):
        waiting = ", ".join(f"{n} {s}" for s, n in skipped.items()) or "no jobs"
        raise UserError(f"sweep {name!r} has no finished job to export ({waiting}): run `runner workers` first")
    staging = _staging(out, str(output))
    try:
        size = _write(Events(tb, time.time()), staging, df, finished, hparams, points)
        marker = {"exported_by": "runner export tensorboard", "sweep": name, "database": shown,
                  "runs": len(finished), "skipped": skipped,
                  "written_at": datetime.datetime.now().isoformat(timespec="seconds")}
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        _publish(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write the export to {str(output)!r}: {exc.strerror or exc}: name another folder "
                        "for -o (one you can write to, on a disk with room)") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Exported(output=Path(output), sweep=name, runs=len(finished), skipped=skipped, bytes=size)


# --- the output folder -------------------------------------------------------------------------------
def _check_output(out: Path, shown: str, overwrite: bool) -> None:
    """Refuse an `out` (absolute; `shown` as the user named it) that is a file, the working folder or
    one above it (a rename replaces it), holds something other than an export, or (without overwrite)
    an export."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{shown!r} is not a folder: name a new or empty folder for -o")
    if Path.cwd() == out or out in Path.cwd().parents:
        raise UserError(f"{shown!r} holds the working folder: name a new folder for the runs, e.g. -o runs")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MARKER).is_file():
        raise UserError(f"{shown!r} is not empty and holds no runner export (no {MARKER}): "
                        "name a new or empty folder for -o")
    if not overwrite:
        raise UserError(f"{shown!r} already holds a TensorBoard export ({_described(out / MARKER)}): "
                        "pass --overwrite to replace it, or name another folder for -o")


def _described(marker: Path) -> str:
    """'sweep 'lr', 12 runs, written 2026-12-01T10:00:00', from an earlier export's marker file."""
    try:
        known = json.loads(marker.read_text())
        return f"sweep {known['sweep']!r}, {known['runs']} runs, written {known['written_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an earlier export"


def _staging(out: Path, shown: str) -> Path:
    """A new hidden folder beside `out` (same file system, so it can take out's place by a rename)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(3)}"
        staging.mkdir()
    except OSError as exc:
        raise UserError(f"cannot create {shown!r}: {exc.strerror or exc}: name another folder for -o") from None
    return staging


def _publish(staging: Path, out: Path) -> None:
    """Put the finished export in `out`'s place: an empty `out` is replaced by the rename itself, an
    earlier export is moved aside first and removed after."""
    if not (out.exists() and any(out.iterdir())):
        os.replace(staging, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(3)}"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old, out)  # the earlier export back in its place
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- what each run holds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _HParam:
    """A swept config key: its column, its kind (bool, number or string) and each job's value (None: unset)."""
    name: str
    kind: str
    values: list[Any]


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _hparams(df: pd.DataFrame, axes: Sequence[str] | None) -> list[_HParam]:
    """The config keys that vary in the sweep (and those its grids name as axes), in grid order, each
    job's value of the kind TensorBoard takes: lists and dicts as JSON text (results(hashable=True))."""
    keys = set(varying_keys(df)) | {c for a in axes or () for c in (a, f"{a}_config")}
    out = []
    for col in (c for c in df.columns[2:df.columns.get_loc("status")] if c in keys):
        values = [None if _missing(v) else v for v in df[col].tolist()]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present):
            out.append(_HParam(col, "bool", [None if v is None else bool(v) for v in values]))
        elif present and all(_number(v) for v in present):
            out.append(_HParam(col, "number", [None if v is None else float(v) for v in values]))
        else:
            out.append(_HParam(col, "string", [None if v is None else v if isinstance(v, str) else str(v)
                                               for v in values]))
    return out


def _metrics(df: pd.DataFrame) -> dict[str, list[float | None]]:
    """The numeric summary columns (final losses, steps, wall time, grab values), each job's value."""
    summary = df.columns[df.columns.get_loc("attempts") + 1:]
    out = {}
    for col in (c for c in summary if c not in NOT_METRICS):
        values = df[col].tolist()
        present = [v for v in values if not _missing(v)]
        if present and all(_number(v) for v in present):
            out[col] = [None if _missing(v) else float(v) for v in values]
    return out


# --- writing ---------------------------------------------------------------------------------------
def _write(events: Events, folder: Path, df: pd.DataFrame, rows: np.ndarray, hparams: list[_HParam],
           points: pd.DataFrame) -> int:
    """Write the experiment into `folder` and one run per job of `rows` (positions in df), BATCH jobs'
    records checksummed at a time; the bytes written."""
    framer, metrics = Framer(), _metrics(df)
    file_name = f"events.out.tfevents.{int(events.wall_time):010d}.runner-export"
    experiment = events.experiment([(h.name, h.kind, sorted({v for v in h.values if v is not None})) for h in hparams],
                                   [(f"summary/{m}", m) for m in metrics])
    size = _write_file(folder / file_name, framer.frame([events.version, experiment]))
    curves, ids, statuses = _Curves(points), df.job_id.tolist(), df.status.tolist()
    width = max(6, len(str(max(ids))))  # job-000123: names sort by id
    for start in range(0, len(rows), BATCH):
        records: list[bytes] = []
        runs: list[tuple[str, int, int]] = []
        for i in rows[start:start + BATCH].tolist():
            run, first = f"job-{ids[i]:0{width}d}", len(records)
            records += _run_records(events, run, {h.name: h.values[i] for h in hparams if h.values[i] is not None},
                                    curves.of(ids[i]), {m: v[i] for m, v in metrics.items() if v[i] is not None})
            records.append(events.session_end(success=statuses[i] == JobStatus.DONE.value))
            runs.append((run, first, len(records)))
        framed = framer.frame(records)
        for run, first, end in runs:
            (folder / run).mkdir()
            size += _write_file(folder / run / file_name, framed[first:end])
    return size


def _run_records(events: Events, run: str, hparams: dict[str, Any], series: list[tuple[str, list[int], bytes]],
                 summary: dict[str, float]) -> list[bytes]:
    """A job's run but its end: file version, hparams session start, every curve point, the summary
    values (at the job's last step: steps_run, else its curves' last)."""
    records = [events.version, events.session_start(run, hparams)]
    last = 0
    for tag, steps, values in series:
        records += events.scalars(tag, steps, values)
        last = max(last, steps[-1])
    steps_run = summary.get("steps_run")
    at = int(steps_run) if steps_run is not None and math.isfinite(steps_run) else last
    packed = float32(list(summary.values()))
    for k, name in enumerate(summary):
        records += events.scalars(f"summary/{name}", [at], packed[4 * k:4 * k + 4])
    return records


class _Curves:
    """The sweep's points cut into (tag, steps, float32 values) series per job, found by job id.
    Needs the points ordered by job, metric and step (as Sweep.points gives them)."""

    def __init__(self, points: pd.DataFrame) -> None:
        jobs = points.job_id.to_numpy()
        self._codes, self._names = pd.factorize(points.metric)
        changed = (np.diff(jobs) != 0) | (np.diff(self._codes) != 0)
        self._starts = np.flatnonzero(np.r_[True, changed]) if len(jobs) else np.zeros(0, dtype=np.int64)
        self._ends = np.r_[self._starts[1:], len(jobs)].astype(np.int64) if len(jobs) else self._starts
        self._block_jobs = jobs[self._starts]
        self._steps, self._values = points.step.to_numpy(), float32(points.value.to_numpy())

    def of(self, job_id: int) -> list[tuple[str, list[int], bytes]]:
        """The job's series, by metric name ([] for a job without points)."""
        lo, hi = np.searchsorted(self._block_jobs, [job_id, job_id + 1])
        return [(str(self._names[self._codes[s]]), self._steps[s:e].tolist(), self._values[4 * s:4 * e])
                for s, e in zip(self._starts[lo:hi].tolist(), self._ends[lo:hi].tolist())]


def _write_file(path: Path, framed: list[bytes]) -> int:
    """Write the framed records as one file; its size."""
    data = b"".join(framed)
    path.write_bytes(data)
    return len(data)
