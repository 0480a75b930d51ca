"""Where `runner workers` spends the seconds before its first job starts.

One fresh process does, in order, what a worker does before its first claim and times each step:
the interpreter's start, importing torch, creating the CUDA context, the first cuBLAS call, the
first optimizer (torch.optim imports torch._dynamo then), importing runner. Then the supervisor's
own steps (nvidia-smi queries), the whole command on a one-job sweep (with the time from the
command's start to that job's start, read from the database), and the slowest imports. Medians of
--repeat runs.

    python benchmarks/startup.py              # on a GPU machine
    python benchmarks/startup.py --quick      # CPU smoke run (one repeat, no CUDA rows)
    python benchmarks/startup.py --targets --baseline ../runner-before   # issue 17's table: before/after/target
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from runner.pool.bytecode import torch_bytecode  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

# One process does, in order, what a worker does before its first claim, and prints the wall clock
# after each step; the parent notes the clock just before starting it, so the first row is the
# interpreter's own start.
STAGES = [
    ("python interpreter", "pass"),
    ("import torch", "import torch"),
    ("CUDA context", "torch.zeros(1, device=DEVICE); torch.cuda.synchronize() if DEVICE == 'cuda' else None"),
    ("first cuBLAS matmul", "a = torch.ones(64, 64, device=DEVICE); (a @ a).sum().item()"),
    ("first optimizer (imports torch._dynamo)", "torch.optim.SGD([a.requires_grad_()], lr=0.1)"),
    ("import runner's trainloop and store", "import runner.train.loop, runner.queue.store"),
]
STAGE_SCRIPT = "import sys, time\nDEVICE = sys.argv[1]\n" + "".join(
    f"{code}\nprint(time.time(), flush=True)\n" for _, code in STAGES)


def timed(cmd: list[str], repeat: int) -> float:
    """Median wall seconds of running `cmd` to completion."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stage_times(repeat: int, device: str) -> list[float]:
    """Median seconds of each stage of STAGES, each in a fresh process."""
    runs = []
    for _ in range(repeat):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, device], env=ENV, cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
        ends = [float(t) for t in out]
        runs.append([end - start for start, end in zip([t0, *ends], ends)])
    return [statistics.median(column) for column in zip(*runs)]


def slowest_imports(device: str, top: int) -> list[tuple[float, str]]:
    """The slowest top-level imports (cumulative seconds) of one worker-like process, by -X importtime."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", STAGE_SCRIPT, device], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((int(parts[1]) / 1e6, parts[2].strip()))
    return sorted(rows, reverse=True)[:top]


def one_job_sweep(repeat: int, devices: str) -> tuple[float, float]:
    """Median (command wall, command start to the job's start) of `runner workers` on a one-job sweep."""
    walls, starts = [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="runner-startup-") as tmp:
            db, grid = Path(tmp) / "jobs.db", Path(tmp) / "grid.yaml"
            grid.write_text("sweep: startup\nbatchfn: gaussian_teacher\nmodel: mlp\n"
                            "base: {d: 200, batch_size: 1024, width: 256, depth: 2, steps: 1, n_test: 1000}\n")
            cli = [sys.executable, "-m", "runner.cli"]
            subprocess.run([*cli, "submit", str(grid), "--db", str(db)], env=ENV, capture_output=True, check=True)
            t0, t0_wall = time.perf_counter(), time.time()
            subprocess.run([*cli, "workers", "--devices", devices, "--db", str(db), "--quiet"], env=ENV,
                           capture_output=True, check=True)
            walls.append(time.perf_counter() - t0)
            con = sqlite3.connect(str(db))
            starts.append(con.execute("SELECT started_at FROM jobs").fetchone()[0] - t0_wall)
            con.close()
    return statistics.median(walls), statistics.median(starts)


# --- issue 17's targets: before (a baseline checkout) and after (this tree) ---------------------------
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
TARGETS = {"submit": 1.0, "first claim": 3.0, "warm pool": 0.5, "run": 8.0}


def _env(root: Path) -> dict[str, str]:
    """The environment that runs the runner found at `root` (this tree or a baseline checkout)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def _cli(root: Path, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], env=_env(root), cwd=cwd, capture_output=True,
                          text=True, check=check)


def _query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(str(db))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def target_times(root: Path, devices: str, repeat: int) -> dict[str, float]:
    """Median seconds of each target measure with the runner at `root`."""
    has_run = (root / "runner" / "cli" / "run.py").exists()
    out: dict[str, list[float]] = {k: [] for k in TARGETS}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="runner-targets-") as tmp:
            folder = Path(tmp)
            t0 = time.perf_counter()
            _cli(root, "submit", str(QUICKSTART), "--db", "a.db", cwd=folder)
            out["submit"].append(time.perf_counter() - t0)
            t0_wall = time.time()
            _cli(root, "workers", "--devices", devices, "--db", "a.db", "--quiet", cwd=folder)
            out["first claim"].append(_query(folder / "a.db", "SELECT min(started_at) FROM attempts")[0][0] - t0_wall)
            out["warm pool"].append(statistics.median(_warm_pool(root, folder, devices)))
            t0 = time.perf_counter()
            if has_run:
                _cli(root, "run", str(QUICKSTART), "--db", "r.db", "--devices", devices, "--quiet", cwd=folder)
            else:  # before `runner run`: the quickstart's three commands
                _cli(root, "submit", str(QUICKSTART), "--db", "r.db", cwd=folder)
                _cli(root, "workers", "--devices", devices, "--db", "r.db", "--quiet", cwd=folder)
                _cli(root, "results", "--sweep", "quickstart", "--db", "r.db", cwd=folder)
            out["run"].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in out.items()}


def _warm_pool(root: Path, folder: Path, devices: str, rounds: int = 3) -> list[float]:
    """Seconds from a submit's commit (its jobs' created_at) to the first claim, on an idle --wait pool."""
    one = folder / "one.yaml"
    one.write_text("batchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 8, batch_size: 32, width: 16, steps: 5}\n")
    db = folder / "w.db"
    _cli(root, "submit", str(one), "sweep=warmup", "--db", str(db), cwd=folder)
    pool = subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--wait", "--devices", devices, "--db",
                             str(db), "--quiet"], env=_env(root), cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latencies = []
    try:
        for sweep in ["warmup"] + [f"round{i}" for i in range(rounds)]:
            if sweep != "warmup":
                _cli(root, "submit", str(one), f"sweep={sweep}", "--db", str(db), cwd=folder)
            while not _query(db, f"SELECT 1 FROM jobs WHERE sweep = '{sweep}' AND status = 'done'"):
                time.sleep(0.05)
            if sweep != "warmup":
                (created, started), = _query(db, "SELECT j.created_at, min(a.started_at) FROM jobs j JOIN attempts a "
                                                 f"ON a.job_id = j.id WHERE j.sweep = '{sweep}'")
                latencies.append(started - created)
            time.sleep(2.0)  # idle: the pool's polls back off to their longest interval
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(timeout=60)
    return latencies


def print_targets(devices: str, repeat: int, baseline: Path | None) -> None:
    after = target_times(ROOT, devices, repeat)
    before = target_times(baseline, devices, repeat) if baseline is not None else {}
    print(f"\nissue 17 targets (median of {repeat}; before: {baseline or '-'})")
    print(f"{'measure':<44} {'before':>8} {'after':>8} {'ratio':>7} {'target':>8}")
    print("-" * 79)
    labels = {"submit": "runner submit, quickstart", "first claim": "runner workers: command to first claim",
              "warm pool": "warm --wait pool: submit to first claim", "run": "runner run, quickstart, end to end"}
    for key, label in labels.items():
        b = before.get(key)
        ratio = f"{b / after[key]:>6.1f}x" if b else f"{'-':>7}"
        print(f"{label:<44} {b if b is not None else float('nan'):>8.2f} {after[key]:>8.2f} {ratio} "
              f"{'< ' + str(TARGETS[key]):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run")
    parser.add_argument("--top", type=int, default=8, help="how many of the slowest imports to list")
    parser.add_argument("--targets", action="store_true", help="only the issue 17 targets table")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of an earlier commit (git worktree add DIR REV): the 'before' column")
    args = parser.parse_args()
    if args.targets:
        cuda = not args.quick and shutil.which("nvidia-smi") is not None
        print_targets("0" if cuda else "cpu", 1 if args.quick else args.repeat,
                      args.baseline.resolve() if args.baseline else None)  # the commands run in temporary folders
        return
    cuda = not args.quick and shutil.which("nvidia-smi") is not None
    repeat = 1 if args.quick else args.repeat
    print(f"# startup benchmark  {time.strftime('%Y-%m-%d')}  {'GPU' if cuda else 'CPU'}  median of {repeat}\n")
    print(f"torch bytecode: {torch_bytecode()}\n")
    print(f"{'step (one process, in order)':<44} {'seconds':>8}")
    print("-" * 53)
    device = "cuda" if cuda else "cpu"
    for (label, _), seconds in zip(STAGES, stage_times(repeat, device)):
        print(f"{label:<44} {seconds:>8.2f}")
    if cuda:
        for label, cmd in (("nvidia-smi -L", ["nvidia-smi", "-L"]),
                           ("nvidia-smi memory query", ["nvidia-smi", "--query-gpu=index,memory.free",
                                                        "--format=csv,noheader,nounits"])):
            print(f"{label:<44} {timed(cmd, repeat):>8.2f}")
    print(f"{'runner --help':<44} {timed([sys.executable, '-m', 'runner.cli', '--help'], repeat):>8.2f}")
    wall, start = one_job_sweep(repeat, "0" if cuda else "cpu")
    print(f"{'runner workers, one 1-step job: to start':<44} {start:>8.2f}")
    print(f"{'runner workers, one 1-step job: whole':<44} {wall:>8.2f}")
    print("\nslowest top-level imports of the steps above (-X importtime, cumulative):")
    for seconds, name in slowest_imports(device, args.top):
        print(f"  {name:<42} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
