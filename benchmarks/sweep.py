"""End-to-end sweep throughput on one GPU: jobs/h for K workers per GPU, eager and with step capture.

Workload (issue 5): 64 jobs (seeds 0..63) x 2000 steps of gaussian_teacher online, d = 200,
batch 1024, mlp depth 2 at width 1024 (and 256), SGD, MSE, fp32, each job evaluated every 100
steps. Every row submits the sweep to a fresh SQLite file and runs the real `runner workers
--devices 0 --per-device K` until the queue is empty; the clock covers the whole command (process
start, CUDA initialisation, claims, training, write-back). The baseline row is one eager worker
(K = 1, `capture: false`); every row's final test loss per job is compared with the baseline's.
Per-worker GPU memory is the largest amount nvidia-smi saw used by one worker process.

    python benchmarks/sweep.py                       # widths 1024,256; K 1,2,4,8; eager and captured
    python benchmarks/sweep.py --widths 256 --per-device 1,8 --capture on   # eager only for the baseline
    python benchmarks/sweep.py --widths 1024 --per-device 8 --capture on --precision tf32   # vs the fp32 baseline
    python benchmarks/sweep.py --quick               # CPU smoke run: 4 tiny jobs, K 2 against the K 1 baseline

The baseline row is always fp32; --precision sets the other rows' (tf32 and bf16 change the numbers,
so those rows show how far their losses move rather than matching the baseline's).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This folder holds queue.py, which would shadow the standard library's queue module (torch imports
# it): take the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
from runner.pool.bytecode import torch_bytecode  # noqa: E402
from runner.pool.mps import MODES as MPS_MODES  # noqa: E402
from runner.train.options import OPTIONS  # noqa: E402

PRECISIONS = OPTIONS["precision"].choices


@dataclass
class Row:
    """One sweep run: its settings and what it measured."""

    width: int
    per_device: int
    capture: bool
    precision: str
    wall_s: float
    jobs: int
    done: int
    losses: dict[int, float]  # seed -> final test loss
    worker_mib: float | None  # largest GPU memory of one worker process
    captured_jobs: int
    job_s: float = 0.0    # mean wall_s of a job (set-up, training, evaluations), from its summary
    setup_s: float = 0.0  # mean setup_s of a job (data, model, optimizer)
    mps: bool = False     # the workers ran under runner's private CUDA MPS daemon
    start_s: float = 0.0  # from the command's start to the first job's start (spawn, imports, CUDA init, MPS)
    tail_s: float = 0.0   # from the last job's end to the command's exit (workers leaving, MPS quitting)

    @property
    def jobs_per_h(self) -> float:
        return self.done / self.wall_s * 3600 if self.wall_s else 0.0


def grid_text(width: int, jobs: int, steps: int, capture: bool, quick: bool, precision: str = "fp32") -> str:
    """The sweep's grid file: the standard workload, one job per seed."""
    d, batch = (8, 64) if quick else (200, 1024)
    return (f"sweep: bench-w{width}-{'graph' if capture else 'eager'}-{precision}\n"
            "batchfn: gaussian_teacher\nmodel: mlp\n"
            f"base: {{d: {d}, batch_size: {batch}, width: {width}, depth: 2, lr: 0.01, steps: {steps}, "
            f"eval_every: 100, n_test: 1000, capture: {str(capture).lower()}, precision: {precision}}}\n"
            f"grid:\n  seed: {{range: [0, {jobs}]}}\n")


def _gpu_memory_sampler(pids_of: Callable[[], set[int]], stop: threading.Event, peak: list[float]) -> None:
    """Poll nvidia-smi for the memory each worker process uses; keep the largest."""
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        mine = pids_of()
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in mine:
                peak[0] = max(peak[0], float(parts[1]))


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            found.add(c)
            todo.append(c)
    return found


def run_sweep(folder: Path, *, width: int, jobs: int, steps: int, per_device: int, capture: bool,
              devices: str, quick: bool = False, mps: str = "auto", precision: str = "fp32") -> Row:
    """Submit the sweep to a fresh database in `folder`, run workers until it is drained, read it back."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "jobs.db"
    grid = folder / "grid.yaml"
    grid.write_text(grid_text(width, jobs, steps, capture, quick, precision))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "runner.cli"]
    sub = subprocess.run([*cli, "submit", str(grid), "--db", str(db)], env=env, capture_output=True, text=True, cwd=folder)
    if sub.returncode != 0:
        raise SystemExit(f"runner submit exited {sub.returncode}:\n{sub.stderr[-3000:]}")
    peak, stop = [0.0], threading.Event()
    t0, t0_wall = time.perf_counter(), time.time()
    # Not --quiet: the pool's first line says whether it runs under MPS (progress lines every 30 s cost nothing).
    proc = subprocess.Popen([*cli, "workers", "--devices", devices, "--per-device", str(per_device), "--db", str(db),
                             "--mps", mps], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = None
    if shutil.which("nvidia-smi") and devices != "cpu":
        sampler = threading.Thread(target=_gpu_memory_sampler, args=(lambda: _descendants(proc.pid), stop, peak), daemon=True)
        sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    end_wall = time.time()
    stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"runner workers exited {proc.returncode}:\n{err[-3000:]}")
    under_mps = "  MPS: " in err  # the pool's first line: "MPS: private daemon ..." or "MPS: workers join ..."
    return _read_back(db, width, per_device, capture, precision, wall, jobs, peak[0] or None, under_mps,
                      (t0_wall, end_wall))


def _read_back(db: Path, width: int, per_device: int, capture: bool, precision: str, wall: float, jobs: int,
               worker_mib: float | None, mps: bool, span: tuple[float, float]) -> Row:
    """The row's figures from its database; `span`: the command's start and end (wall clock)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT j.config, j.status, r.summary, j.started_at, j.finished_at "
                           "FROM jobs j LEFT JOIN results r ON r.job_id = j.id").fetchall()
    finally:
        con.close()
    started = [r[3] for r in rows if r[3] is not None]
    finished = [r[4] for r in rows if r[4] is not None]
    start_s = (min(started) if started else span[0]) - span[0]
    tail_s = span[1] - (max(finished) if finished else span[1])
    losses, done, captured, job_s, setup_s = {}, 0, 0, 0.0, 0.0
    for config, status, summary, _, _ in rows:
        if status != "done" or summary is None:
            continue
        done += 1
        s = json.loads(summary)
        losses[int(json.loads(config)["seed"])] = s.get("final_test_loss")
        captured += s.get("step_capture") == "on"
        job_s += s.get("wall_s") or 0.0
        setup_s += s.get("setup_s") or 0.0
    return Row(width, per_device, capture, precision, wall, jobs, done, losses, worker_mib, captured,
               job_s / max(done, 1), setup_s / max(done, 1), mps, start_s, tail_s)


def _n_differing(a: dict[int, float], b: dict[int, float], rtol: float = 1e-6) -> int:
    """Jobs whose final test loss differs from the baseline's by more than rtol."""
    return sum(1 for k in a if k in b and a[k] is not None and b[k] is not None
               and abs(a[k] - b[k]) > rtol * max(abs(a[k]), 1e-12))


def _max_rel_diff(a: dict[int, float], b: dict[int, float]) -> float:
    common = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    if not common:
        return float("nan")
    return max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in common)


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or "?"


def _is_baseline(row: Row) -> bool:
    return row.per_device == 1 and not row.capture and row.precision == "fp32"


def print_table(rows: list[Row], title: str) -> None:
    """Rows of one width, with ratios against its baseline row (K = 1, eager, fp32)."""
    base = next(r for r in rows if _is_baseline(r))
    print(title)
    header = (f"{'width':>6} {'K':>3} {'capture':>8} {'prec':>5} {'wall s':>8} {'jobs/h':>9} {'vs base':>8} {'done':>5} "
              f"{'graph':>6} {'mps':>4} {'MiB/wkr':>8} {'job s':>7} {'setup s':>8} {'start s':>8} {'tail s':>7} {'max rel diff vs base':>21} {'jobs differing':>15}")
    print(header)
    print("-" * len(header))
    for r in rows:
        mib = f"{r.worker_mib:.0f}" if r.worker_mib else "-"
        print(f"{r.width:>6} {r.per_device:>3} {'on' if r.capture else 'off':>8} {r.precision:>5} {r.wall_s:>8.1f} {r.jobs_per_h:>9.0f} "
              f"{r.jobs_per_h / base.jobs_per_h:>7.2f}x {r.done:>5} {r.captured_jobs:>6} {'yes' if r.mps else 'no':>4} {mib:>8} {r.job_s:>7.3f} {r.setup_s:>8.3f} {r.start_s:>8.1f} {r.tail_s:>7.1f} "
              f"{_max_rel_diff(base.losses, r.losses):>21.2e} {_n_differing(base.losses, r.losses):>15}")
    best = max(rows, key=lambda r: r.jobs_per_h)
    print(f"best: K={best.per_device} capture {'on' if best.capture else 'off'} {best.precision}, "
          f"{best.jobs_per_h / base.jobs_per_h:.2f}x the baseline (target >= 6x with the same losses)")
    print("job s: a job's own wall time (set-up, steps, evaluations); wall s - jobs x job s / K is what the\n"
          "rows spend outside jobs (process start, CUDA init, claims, write-back, exit); start s: command start\n"
          "to the first job's start; tail s: the last job's end to the command's exit\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1024,256")
    parser.add_argument("--per-device", default="1,2,4,8")
    parser.add_argument("--capture", default="off,on", help="off, on or off,on")
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--devices", default="0")
    parser.add_argument("--mps", default="auto", choices=MPS_MODES, help="passed to runner workers")
    parser.add_argument("--precision", default="fp32",
                        help=f"the rows' precisions, of {', '.join(PRECISIONS)} (the baseline row is fp32 whatever this says)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: 4 jobs x 30 steps, width 16, K 2")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.per_device, args.jobs, args.steps, args.devices = "16", "2", 4, 30, "cpu"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if args.devices != "cpu" and torch.cuda.is_available() else None
        version = torch.__version__
    except ImportError:
        gpu, version = None, "?"
    where = gpu or f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    print(f"# sweep benchmark  {time.strftime('%Y-%m-%d')}  {where}  torch {version}  commit {_commit()}")
    print(f"# {args.jobs} jobs x {args.steps} steps per row, devices {args.devices}; "
          "wall = the whole `runner workers` command")
    print(f"# torch bytecode: {torch_bytecode()}\n")
    captures = [c == "on" for c in args.capture.split(",")]
    eager_ks = [int(k) for k in args.per_device.split(",")] if False in captures else [1]  # the baseline is eager
    precisions = args.precision.split(",")
    if set(precisions) - set(PRECISIONS):
        parser.error(f"--precision {args.precision}: give one of {', '.join(PRECISIONS)}, or several joined by commas")
    if False not in captures and "fp32" in precisions:  # the baseline row is one of the eager rows
        captures.insert(0, False)
    with tempfile.TemporaryDirectory(prefix="runner-sweep-bench-") as tmp:
        for width in map(int, args.widths.split(",")):
            rows = []
            for precision in precisions:
                for capture in captures:
                    for k in (map(int, args.per_device.split(",")) if capture else eager_ks):
                        folder = Path(tmp) / f"w{width}-k{k}-{'on' if capture else 'off'}-{precision}"
                        rows.append(run_sweep(folder, width=width, jobs=args.jobs, steps=args.steps, per_device=k,
                                              capture=capture, devices=args.devices, quick=args.quick, mps=args.mps,
                                              precision=precision))
                        print(f"  ran width {width} K={k} capture {'on' if capture else 'off'} {precision}: "
                              f"{rows[-1].wall_s:.1f} s", file=sys.stderr, flush=True)
            if not any(_is_baseline(r) for r in rows):  # --per-device without 1, or --precision
                rows.insert(0, run_sweep(Path(tmp) / f"w{width}-base", width=width, jobs=args.jobs, steps=args.steps,
                                         per_device=1, capture=False, devices=args.devices, quick=args.quick))
            print_table(rows, f"## width {width}")


if __name__ == "__main__":
    main()
