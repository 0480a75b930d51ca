"""TensorBoard export benchmark: `runner export tensorboard` on a finished sweep of N jobs (default 10,000).

The sweep is written through the public Store API, as workers would (add_jobs, then claim -> finish):
an lr x seed grid (2 axes: 100 lr values, N/100 seeds), each finished job with 4 curves of 20 points
(train_loss, test_loss, grad_norm, weight_norm) and a worker-shaped summary (final losses, steps, wall
and setup time, device, host, precision, step_at thresholds, final grab values); 2% of the jobs fail
and 1% diverge. Then, best of --repeat (wall seconds):

1. read      runner.results(db, sweep) + runner.curves(db, sweep): the baseline, what the export must read
2. export    runner.results.tensorboard.export_tensorboard() into a new folder on disk (in this process)
3. tmpfs     the same into /dev/shm (where it exists): the export without the disk's cost
4. command   `runner export tensorboard --db DB --sweep S -o DIR` on disk: a new process, start-up included

The export creates one folder and one file per job: where the file system is slow at that (1.4 ms a
run on the 2-core development VM's disk, 16 us on its tmpfs), that is most of its time; the tmpfs
row shows the rest. Disk: a temporary folder (TMPDIR), or --dir.

    python benchmarks/export_tensorboard.py [--jobs 10000] [--repeat 3] [--db PATH] [--quick]

--db: keep the database at PATH (built there when missing, reused when it holds the sweep with the
same number of jobs); default: a temporary file, removed afterwards.
"""
from __future__ import annotations

import os
import sys

# This folder holds queue.py, which would shadow the standard library's `queue`: it leaves sys.path,
# and the repository root goes there instead, so `runner` imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse
import datetime
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import runner
from benchmarks.synthetic import git_rev, machine, ready
from runner.errors import RunnerError
from runner.hashing import config_hash
from runner.queue.store import JobOutcome, JobStatus, Store, display_url

SWEEP = "bench"
JOBS = 10_000
STEPS = tuple(range(0, 1000, 50))  # 20 points a curve
CURVES = ("train_loss", "test_loss", "grad_norm", "weight_norm")
TRACEBACK = 'Traceback (most recent call last):\n  File "loop.py", line 1, in train\nRuntimeError: boom (benchmark)\n'


def config(i: int) -> dict[str, Any]:
    """Job i of a 100 lr x N/100 seed grid, with the fixed keys of a validated grid cell."""
    return {"model": "mlp", "batchfn": "gaussian_teacher", "d": 32, "depth": 2, "width": 256, "optimizer": "sgd",
            "batch_size": 128, "steps": STEPS[-1] + 50, "lr": round(1e-4 * (1 + i % 100), 6), "seed": i // 100,
            "thresholds": [0.1, 0.03]}


def outcome(i: int) -> JobOutcome:
    """What job i writes back: failed every 50th, diverged every 97th, else done with 4 curves."""
    where = {"device": f"cuda:{i % 4}", "host": "bench-host", "precision": "fp32", "cuda_visible_devices": str(i % 4)}
    if i % 50 == 7:
        return JobOutcome(JobStatus.FAILED, {**where, "wall_s": 0.5}, error=TRACEBACK)
    loss = 1.0 / (1 + i % 100) + (i // 100) * 1e-6
    points = [(s, name, loss * (2 - s / STEPS[-1]) * (k + 1)) for s in STEPS for k, name in enumerate(CURVES)]
    summary = {**where, "final_train_loss": loss, "final_test_loss": 1.1 * loss, "steps_run": STEPS[-1] + 50,
               "wall_s": 3.25, "setup_s": 0.01, "step_at_0.1": 300, "step_at_0.03": None,
               "final_grad_norm": 3 * loss, "final_weight_norm": 4 * loss}
    if i % 97 == 3:
        summary.update(final_train_loss=None, final_test_loss=None, steps_run=100, diverged_at=100)
        return JobOutcome(JobStatus.DIVERGED, summary, points[:8], error="non-finite train loss at step 100")
    return JobOutcome(JobStatus.DONE, summary, points)


def build(db: str, n: int) -> float:
    """Write the benchmark sweep of n jobs into a fresh database; the seconds it took. One fusion key
    lets a claim take 500 jobs at once; each is still finished in its own transaction, as workers do."""
    started = time.perf_counter()
    with Store(db, create=True) as store:
        configs = [config(i) for i in range(n)]
        store.add_jobs(SWEEP, [(config_hash(c), c, "bench") for c in configs], max_attempts=1, axes=["lr", "seed"])
        while jobs := store.claim_group("bench/1/cuda:0/0.0", host="bench-host", device="cuda:0", most=500):
            for job in jobs:  # job id i + 1 is job i of the grid
                store.finish(job.id, job.token, outcome(job.id - 1))
    return time.perf_counter() - started


def best(fn: Callable[[], Any], repeat: int, before: Callable[[], Any] = lambda: None) -> tuple[float, Any]:
    """Wall seconds of the fastest of `repeat` calls (each after an untimed `before()`), and the last
    call's result."""
    times, out = [], None
    for _ in range(repeat):
        before()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def header(db_shown: str) -> str:
    import tensorboard

    return (f"export-tensorboard benchmark {datetime.datetime.now().isoformat(timespec='seconds')}; {machine()}, "
            f"tensorboard {tensorboard.__version__}; git {git_rev()}; db {db_shown}")


Row = tuple[str, int, float, int]  # what, jobs (runs), seconds, bytes written


def measure(db: str, n: int, repeat: int, tmp: str) -> list[Row]:
    """The read baseline, the export in this process, and the command."""
    from runner.results.tensorboard import export_tensorboard

    seconds, (df, points) = best(lambda: (runner.results(db, SWEEP), runner.curves(db, SWEEP)), repeat)
    assert len(df) == n and len(points) > 70 * n, (len(df), len(points))
    rows: list[Row] = [("read: results() + curves()", n, seconds, 0)]
    out = os.path.join(tmp, "runs")
    for label, where in (("export_tensorboard(), disk", out), ("export_tensorboard(), tmpfs", _tmpfs())):
        if where is None:
            continue
        seconds, done = best(lambda: export_tensorboard(db, where, SWEEP), repeat, lambda: _remove(where))
        _remove(where)
        assert done.runs == n and not done.skipped, done
        rows.append((label, done.runs, seconds, done.bytes))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    command = [sys.executable, "-m", "runner.cli", "export", "tensorboard", "--db", db, "--sweep", SWEEP, "-o", out]
    seconds, ran = best(lambda: subprocess.run(command, env=env, capture_output=True, text=True, timeout=600), repeat,
                        lambda: _remove(out))
    if ran.returncode != 0:
        raise SystemExit(f"runner export tensorboard failed:\n{ran.stderr}")
    rows.append(("runner export tensorboard, disk", done.runs, seconds, done.bytes))
    return rows


def _remove(folder: str) -> None:
    """Remove an earlier run's folder and wait for the disk to take it (untimed): each timed run writes
    a new folder, not paying for the removal of the last one."""
    shutil.rmtree(folder, ignore_errors=True)
    if hasattr(os, "sync"):
        os.sync()


def _tmpfs() -> str | None:
    """A new folder's path in /dev/shm (memory), or None where there is none."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        return None
    return os.path.join("/dev/shm", f"runner-export-bench-{os.getpid()}")


def table(rows: list[Row]) -> str:
    read = rows[0][2]
    cols = ("what", "jobs", "seconds", "runs/s", "MB written", "x read")
    cells = [(w, f"{j:,}", f"{s:.2f}", f"{j / s:,.0f}" if b else "-", f"{b / 1e6:.1f}" if b else "-", f"{s / read:.2f}")
             for w, j, s, b in rows]
    widths = [max(len(x[i]) for x in [cols, *cells]) for i in range(len(cols))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
    return "\n".join([fmt(cols), fmt(tuple("-" * w for w in widths)), *map(fmt, cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=None, help=f"jobs in the sweep (default {JOBS:,})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row; the fastest is shown (default 3)")
    parser.add_argument("--db", help="keep the database here, a file path (default: a temporary file)")
    parser.add_argument("--dir", help="write the disk rows' runs under this folder (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 300 jobs, one run of each row")
    args = parser.parse_args(argv)
    n = args.jobs if args.jobs is not None else 300 if args.quick else JOBS
    repeat = 1 if args.quick else args.repeat
    if n < 100 or repeat < 1:
        parser.error("--jobs must be at least 100 and --repeat at least 1")
    tmp = tempfile.mkdtemp(prefix="runner-export-bench-", dir=args.dir)
    db = args.db or os.path.join(tmp, "export.db")
    try:
        print(header(display_url(db)), flush=True)
        ready(db, SWEEP, n, build)
        print(f"  {len(CURVES)} curves x {len(STEPS)} points a job; x read: seconds / the read row's")
        print()
        print(table(measure(db, n, repeat, tmp)))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
