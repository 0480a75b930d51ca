"""Where `runner workers` spends the seconds before its first job starts.

Each row is a fresh process doing one more piece of what a worker does before training: the
interpreter, importing torch, creating the CUDA context, the first cuBLAS call, the first
optimizer (torch.optim imports torch._dynamo then; workers do this before their first claim),
importing runner;
then the supervisor's own steps (nvidia-smi queries) and the whole command on a one-job sweep,
with the time from the command's start to that job's start read from the database. Median of
--repeat runs; the 'added' column is each row minus the row above it where the rows nest.

    python benchmarks/startup.py              # on a GPU machine
    python benchmarks/startup.py --quick      # CPU smoke run (one repeat, no CUDA rows)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

NESTED = [  # (label, code): each row does what the one above it did, and one thing more
    ("python interpreter", "pass"),
    ("+ import torch", "import torch"),
    ("+ CUDA context", "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"),
    ("+ first cuBLAS matmul", "import torch; a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item()"),
    ("+ first optimizer (imports torch._dynamo)", "import torch; a = torch.ones(64, 64, device='cuda'); "
                                                  "(a @ a).sum().item(); torch.optim.SGD([a.requires_grad_()], lr=0.1)"),
    ("+ import runner's trainloop", "import torch; a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item(); "
                                    "torch.optim.SGD([a.requires_grad_()], lr=0.1); import runner.trainloop, runner.store"),
]


def timed(cmd: list[str], repeat: int, **kwargs) -> float:
    """Median wall seconds of running `cmd` to completion."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=ENV, capture_output=True, check=True, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="CPU smoke run")
    args = parser.parse_args()
    cuda = not args.quick and shutil.which("nvidia-smi") is not None
    repeat = 1 if args.quick else args.repeat
    print(f"# startup benchmark  {time.strftime('%Y-%m-%d')}  {'GPU' if cuda else 'CPU'}  median of {repeat}\n")
    print(f"{'step':<44} {'seconds':>8} {'added':>7}")
    print("-" * 61)
    previous = None
    for label, code in NESTED:
        if not cuda and "cuda" in code:
            code = code.replace(", device='cuda'", "").replace("; torch.cuda.synchronize()", "")
        s = timed([sys.executable, "-c", code], repeat, cwd=ROOT)
        print(f"{label:<44} {s:>8.2f} {s - previous if previous is not None else s:>7.2f}")
        previous = s
    if cuda:
        for label, cmd in (("nvidia-smi -L", ["nvidia-smi", "-L"]),
                           ("nvidia-smi memory query", ["nvidia-smi", "--query-gpu=index,memory.free",
                                                        "--format=csv,noheader,nounits"])):
            print(f"{label:<44} {timed(cmd, repeat):>8.2f}")
    print(f"{'runner --help':<44} {timed([sys.executable, '-m', 'runner.cli', '--help'], repeat):>8.2f}")
    wall, start = one_job_sweep(repeat, "0" if cuda else "cpu")
    print(f"{'runner workers, one 1-step job: to start':<44} {start:>8.2f}")
    print(f"{'runner workers, one 1-step job: whole':<44} {wall:>8.2f}")


if __name__ == "__main__":
    main()
