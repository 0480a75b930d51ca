"""Results-reading benchmark (issue 6): runner.results(), curves() and grid_array() on a big sweep.

A sweep of N jobs (default 100,000) is written through the public Store API, as workers would:
add_jobs, then claim -> finish per job (about 2% failed, 1% diverged, 0.5% left pending, one left
running), each finished job with 10 metric points (train_loss and test_loss at 5 steps) and a
worker-shaped summary. Then each read is timed (best of --repeat calls, each opening the database
afresh as a user's call does; wall seconds, and the CPU seconds of this process, which show how
much of the wall time was waiting for the CPU on a shared machine):

1. results(db, sweep)                                 one row per job (target: < 3 s for 100,000 jobs)
2. curves(db, sweep, ["test_loss"], job_ids=<1,000>)  a subset: 1,000 jobs
3. curves(db, sweep, ["test_loss"])                   one metric of every job
4. grid_array(db, sweep, axes=["lr", "width", "seed"])

    python benchmarks/results_read.py [--jobs 100000] [--repeat 3] [--db PATH] [--quick]

--db: keep the database at PATH (built there when missing, reused when it holds the sweep with the
same number of jobs); default: a temporary file, removed afterwards.
"""
from __future__ import annotations

import os
import sys

# This folder holds queue.py, and Python puts a script's folder first on sys.path: that folder must
# go, or the standard library's `import queue` (pandas, SQLAlchemy's pool) would import that script.
# The repository root goes there instead, so `runner` imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse
import datetime
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

import runner
from benchmarks.synthetic import git_rev, machine, ready
from runner.errors import RunnerError
from runner.hashing import config_hash
from runner.queue.store import JobOutcome, JobStatus, Store, display_url

SWEEP = "bench"
TARGET_S, TARGET_JOBS = 3.0, 100_000  # results() on 100,000 jobs
SUBSET = 1_000                        # jobs in the curves() subset row
STEPS = (0, 150, 300, 450, 600)
TRACEBACK = ('Traceback (most recent call last):\n  File "trainloop.py", line 1, in train\n'
             "RuntimeError: CUDA out of memory (benchmark)\n")


def config(i: int) -> dict[str, Any]:
    """Job i of a 10 lr x 4 width x N/40 seed grid (12 keys, like a validated grid cell)."""
    return {"model": "mlp", "batchfn": "gaussian_teacher", "d": 32, "depth": 2, "width": 64 << (i // 10 % 4),
            "optimizer": "sgd", "momentum": 0.9, "batch_size": 128, "steps": STEPS[-1],
            "lr": round(0.001 * (1 + i % 10), 6), "seed": i // 40, "thresholds": [0.1, 0.03]}


def outcome(i: int) -> JobOutcome:
    """What job i writes back: failed every 50th, diverged every 97th, else done with a known loss."""
    where = {"device": f"cuda:{i % 4}", "host": "bench-host", "cuda_visible_devices": str(i % 4)}
    if i % 50 == 7:
        return JobOutcome(JobStatus.FAILED, {**where, "wall_s": 0.5}, error=TRACEBACK)
    loss = 1.0 / (1 + i % 10) + (i // 40) * 1e-6
    points = [(s, name, loss * (2 - s / STEPS[-1]) * k)
              for s in STEPS for name, k in (("train_loss", 1.0), ("test_loss", 1.1))]
    summary = {"final_train_loss": loss, "final_test_loss": loss * 1.1, "steps": STEPS[-1], "wall_s": 3.25,
               "setup_s": 0.01, "device": where["device"], "host": where["host"], "precision": "fp32",
               "step_at_0.1": 300, "step_at_0.03": None, **where}
    if i % 97 == 3:
        summary.update(final_train_loss=None, final_test_loss=None, diverged_at=150)
        return JobOutcome(JobStatus.DIVERGED, summary, points[:2], error="non-finite train loss at step 150")
    return JobOutcome(JobStatus.DONE, summary, points)


def build(db: str, n: int) -> float:
    """Write the benchmark sweep of n jobs into a fresh database; returns the seconds it took."""
    started = time.perf_counter()
    store = Store(db, create=True)
    try:
        store.add_jobs(SWEEP, [(config_hash(c), c) for c in map(config, range(n))], max_attempts=1)
        leave = max(1, n // 200)  # pending at the end; one more is claimed and left running
        for i in range(n - leave):  # jobs are claimed in id order: job i + 1 is job i of the grid
            job = store.claim(f"bench/1/cuda:{i % 4}/0.0", host="bench-host", device=f"cuda:{i % 4}")
            store.finish(job.id, job.token, outcome(job.id - 1))
        store.claim("bench/1/cuda:0/0.0", host="bench-host", device="cuda:0", lease_s=3600)
    finally:
        store.close()
    return time.perf_counter() - started


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds) of the fastest of `repeat` calls, and the last call's result.
    CPU seconds (this process) tell how much of the wall time was work on a shared machine."""
    times, out = [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return (*min(times), out)


def header(db_shown: str) -> str:
    return (f"results-read benchmark {datetime.datetime.now().isoformat(timespec='seconds')}; {machine()}, "
            f"pandas {pd.__version__}, SQLite {sqlite3.sqlite_version}; git {git_rev()}; db {db_shown}")


Row = tuple[str, int, int, float, float, str, str]  # call, jobs, rows, seconds, CPU seconds, target, met


def measure(db: str, n: int, repeat: int) -> list[Row]:
    """One row per timed read."""
    subset = list(range(1, min(SUBSET, n) + 1))
    rows = []
    seconds, cpu, df = best(lambda: runner.results(db, sweep=SWEEP), repeat)
    assert len(df) == n and (df.status == "done").sum() > 0.9 * n, df.status.value_counts()
    met = ("< 3 s", "yes" if seconds < TARGET_S else "NO") if n >= TARGET_JOBS else ("-", "-")
    rows.append(("results()", n, len(df), seconds, cpu, *met))
    seconds, cpu, cv = best(lambda: runner.curves(db, sweep=SWEEP, metrics=["test_loss"], job_ids=subset), repeat)
    rows.append((f"curves(test_loss), {len(subset):,} jobs", len(subset), len(cv), seconds, cpu, "-", "-"))
    seconds, cpu, cv = best(lambda: runner.curves(db, sweep=SWEEP, metrics=["test_loss"]), repeat)
    rows.append(("curves(test_loss), all jobs", n, len(cv), seconds, cpu, "-", "-"))
    seconds, cpu, grid = best(lambda: runner.grid_array(db, sweep=SWEEP, axes=["lr", "width", "seed"]), repeat)
    rows.append(("grid_array(lr x width x seed)", n, grid.values.size, seconds, cpu, "-", "-"))
    return rows


def table(rows: list[Row]) -> str:
    cols = ("call", "jobs", "rows", "seconds", "cpu s", "target", "met?")
    cells = [(c, f"{j:,}", f"{r:,}", f"{s:.3f}", f"{p:.3f}", t, m) for c, j, r, s, p, t, m in rows]
    widths = [max(len(x[i]) for x in [cols, *cells]) for i in range(len(cols))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
    return "\n".join([fmt(cols), fmt(tuple("-" * w for w in widths)), *map(fmt, cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=None, help=f"jobs in the sweep (default {TARGET_JOBS:,})")
    parser.add_argument("--repeat", type=int, default=3, help="calls per read; the fastest is shown (default 3)")
    parser.add_argument("--db", help="keep the database here, a file path (default: a temporary file)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 400 jobs, one call per read")
    args = parser.parse_args(argv)
    n = args.jobs if args.jobs is not None else 400 if args.quick else TARGET_JOBS
    repeat = 1 if args.quick else args.repeat
    if n < 40 or repeat < 1:
        parser.error("--jobs must be at least 40 and --repeat at least 1")
    tmp = tempfile.mkdtemp(prefix="runner-results-bench-") if args.db is None else None
    db = os.path.join(tmp, "results.db") if tmp else args.db
    try:
        print(header(display_url(db)), flush=True)
        ready(db, SWEEP, n, build)
        print()
        print(table(measure(db, n, repeat)))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
