"""Fused trials, measured two ways in one script.

Whole command (the default; the issue's benchmark): each row submits one sweep to a fresh SQLite
file and times the real `runner workers --devices 0 ...` until the queue is empty (process start,
CUDA set-up, claims, training, write-back). Rows: unfused K=1 captured (`--fuse 1`, one worker),
unfused 8 captured workers under MPS (`--per-device 8 --fuse 1`), fused (`--fuse auto`). Columns:
jobs/h of the whole command, model-steps/s of the whole command and inside the jobs (the steps over
the seconds the device spent training them: a job's wall_s, shared by a fused group's members and
by the workers running at once), each row's ratio to the K=1 row, and the largest relative
difference of a job's final test loss from the same job in the K=1 row.

    python benchmarks/fused.py                       # the sweeps of issue 14 on GPU 0 (also with draw_ahead: tiny 1000, width 256 10)
    python benchmarks/fused.py --sweeps tiny --unfused-jobs 64   # fewer jobs in the slow rows
    python benchmarks/fused.py --lrs-per-seed 1      # every job its own seed (no twins: nothing shared)
    python benchmarks/fused.py --in-process          # train_group against runner.train, no queue
    python benchmarks/fused.py --quick               # a small CPU smoke run of the in-process rows
    python benchmarks/fused.py --agreement           # how far fused jobs end from the same jobs alone, per lr

--agreement trains the same seeds alone and as one fused group at each learning rate (width 1024 by
default, 2,000 steps, test loss every 100) and prints, per lr, how far the final test losses differ,
when the worst job's curves part, and the largest rise of a test loss between evaluations alone (a
sign of an unstable run, where any rounding difference grows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent  # this folder holds queue.py, which would shadow the stdlib's queue
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

import runner  # noqa: E402
from runner.train.fused import train_group  # noqa: E402

WORKLOADS = {
    "tiny": dict(batchfn="moons", model="mlp", batch_size=64, width=32, depth=2, loss="cross_entropy", n_test=256),
    "standard-256": dict(batchfn="gaussian_teacher", model="mlp", d=200, batch_size=1024, width=256, depth=2, n_test=1000),
}
FULL = {"tiny": [64, 256, 1024], "standard-256": [8, 32, 128]}
QUICK = {"tiny": [4, 16]}


def configs(base: dict, k: int, steps: int) -> list[dict]:
    """K jobs of one key: seeds and learning rates vary, as in a sweep."""
    return [dict(base, steps=steps, eval_every=max(steps // 4, 1), seed=i, lr=0.02 * (1 + i % 4)) for i in range(k)]


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


SWEEPS = {  # the issue's sweeps: name -> (base config, jobs)
    "tiny": (dict(batchfn="moons", model="mlp", batch_size=64, width=32, depth=2, loss="cross_entropy", n_test=256,
                  steps=2000, eval_every=500), 1024),
    "tiny-draw-ahead": (dict(batchfn="moons", model="mlp", batch_size=64, width=32, depth=2, loss="cross_entropy",
                             n_test=256, steps=2000, eval_every=500, draw_ahead=1000), 1024),
    "standard-256": (dict(batchfn="gaussian_teacher", model="mlp", d=200, batch_size=1024, width=256, depth=2,
                          n_test=1000, steps=2000, eval_every=500), 256),
    "standard-256-draw-ahead": (dict(batchfn="gaussian_teacher", model="mlp", d=200, batch_size=1024, width=256,
                                     depth=2, n_test=1000, steps=2000, eval_every=500, draw_ahead=10), 256),
    "standard-1024": (dict(batchfn="gaussian_teacher", model="mlp", d=200, batch_size=1024, width=1024, depth=2,
                           n_test=1000, steps=2000, eval_every=500), 256),
}
ROWS = {"K=1 captured": ["--fuse", "1"], "8 workers MPS": ["--fuse", "1", "--per-device", "8"], "fused auto": []}


def sweep_rows(name: str, base: dict, jobs: int, unfused_jobs: int, devices: str, steps: int | None,
               rows: list[str], lrs_per_seed: int = 4) -> None:
    """The whole-command rows of one sweep (the K=1 row first: the others' baseline), printed as they finish."""
    base = dict(base, **({"steps": steps} if steps else {}))
    results: dict[str, dict] = {}
    for row in ["K=1 captured"] + [r for r in rows if r != "K=1 captured"]:
        flags = ROWS[row]
        n = jobs if row.startswith("fused") else min(jobs, unfused_jobs)
        with tempfile.TemporaryDirectory() as folder:
            results[row] = whole_command(Path(folder), name, base, n, devices, flags, lrs_per_seed)
        first = results["K=1 captured"]
        r = results[row]
        diff = max((abs(r["losses"][k] - v) / abs(v) for k, v in first["losses"].items() if k in r["losses"] and v),
                   default=float("nan"))
        fused = r["fused"] or "-"
        print(f"{name:<16} {row:<14} {r['done']:>5} {r['seconds']:>8.1f} {r['jobs_h']:>10,.0f} "
              f"{r['jobs_h'] / first['jobs_h']:>7.1f}x {r['steps_s']:>12,.0f} {r['inside']:>13,.0f} "
              f"{r['inside'] / first['inside']:>7.1f}x {fused:>7} {diff:>12.1e}", flush=True)


def whole_command(folder: Path, name: str, base: dict, jobs: int, devices: str, flags: list[str],
                  lrs_per_seed: int = 4) -> dict:
    """Submit `jobs` jobs (seeds x `lrs_per_seed` learning rates) to a fresh database, run `runner
    workers` until done, read back."""
    db, grid = folder / "jobs.db", folder / "grid.yaml"
    lrs = [0.02, 0.04, 0.06, 0.08][:lrs_per_seed]
    grid.write_text(yaml.safe_dump({"sweep": name, "base": base, "grid": {"seed": {"range": [0, jobs // len(lrs)]},
                                                                         "lr": lrs}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "runner.cli"]
    subprocess.run([*cli, "submit", str(grid), "--db", str(db)], env=env, check=True, capture_output=True, cwd=folder)
    t0 = time.perf_counter()
    done = subprocess.run([*cli, "workers", "--devices", devices, "--db", str(db), "--quiet", *flags], env=env,
                          capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"runner workers exited {done.returncode}:\n{done.stderr[-3000:]}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT j.config, r.summary FROM jobs j JOIN results r ON r.job_id = j.id "
                       "WHERE j.status = 'done'").fetchall()
    con.close()
    losses, steps, busy, groups = {}, 0, 0.0, set()
    workers = int(flags[flags.index("--per-device") + 1]) if "--per-device" in flags else 1
    for config, summary in rows:
        c, s = json.loads(config), json.loads(summary)
        losses[(c["seed"], c["lr"])] = s["final_test_loss"]
        k = s.get("fused") if isinstance(s.get("fused"), int) else 1
        groups.add(k)
        steps += s["steps_run"]
        busy += s["wall_s"] / k / workers  # a group's members share its seconds; workers at once share the device
    return {"done": len(rows), "seconds": seconds, "jobs_h": len(rows) / seconds * 3600, "steps_s": steps / seconds,
            "inside": steps / busy if busy else float("nan"), "losses": losses,
            "fused": "/".join(str(k) for k in sorted(groups, reverse=True)[:2]) if groups != {1} else ""}


def command_main(args: argparse.Namespace) -> None:
    devices = "0" if torch.cuda.is_available() else "cpu"
    machine = torch.cuda.get_device_name() if devices == "0" else platform.processor() or "cpu"
    print(f"fused benchmark, whole command  {machine}  torch {torch.__version__}  git {_commit()}  "
          f"{args.lrs_per_seed} lr(s) per seed")
    print(f"{'sweep':<16} {'row':<14} {'jobs':>5} {'seconds':>8} {'jobs/h':>10} {'vs K=1':>8} {'steps/s':>12} "
          f"{'inside st/s':>13} {'vs K=1':>8} {'groups':>7} {'max rel diff':>12}")
    for name in args.sweeps.split(","):
        base, jobs = SWEEPS[name]
        sweep_rows(name, base, args.jobs or jobs, args.unfused_jobs, devices, args.steps, args.rows.split(","),
                   args.lrs_per_seed)


def agreement_main(args: argparse.Namespace) -> None:
    """Fused against alone, per learning rate: the final test losses' relative differences."""
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    base = dict(WORKLOADS["standard-256"], width=args.width, steps=args.steps or 2000, eval_every=100)
    if args.quick:
        base.update(d=8, batch_size=32, width=16, n_test=100, steps=args.steps or 200, eval_every=20)
        torch.set_num_threads(1)
    seeds = args.seeds or (3 if args.quick else 48)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"fused agreement  {device} ({name})  torch {torch.__version__}  git {_commit()}  width {base['width']}, "
          f"{base['steps']} steps, {seeds} seeds per lr")
    print(f"{'lr':>6} {'jobs':>5} {'alone s':>8} {'fused s':>8} {'x alone':>8} {'max rel diff':>13} {'median':>9} "
          f"{'> 1e-2':>7} {'worst parts at':>15} {'max rise alone':>15}")
    runner.train(dict(base, steps=5, seed=0, lr=0.01), device=device)  # warm-up: imports, CUDA context, cuBLAS
    for lr in (float(v) for v in args.lrs.split(",")):
        cfgs = [dict(base, seed=seed, lr=lr) for seed in range(seeds)]
        alone_s, alone = timed(lambda: [runner.train(c, device=device) for c in cfgs])
        fused_s, fused = timed(lambda: train_group(cfgs, device=device))
        rows = []
        for a, f in zip(alone, fused):
            steps, la = a.curve("test_loss")
            rel = np.abs(f.curve("test_loss")[1] - la) / np.abs(la)
            rows.append((float(rel[-1]), int(steps[np.argmax(rel > 1e-3)]) if (rel > 1e-3).any() else None,
                         float(np.max(la[1:] / la[:-1]))))
        finals = np.array([r[0] for r in rows])
        worst = max(rows, key=lambda r: r[0])
        print(f"{lr:>6g} {seeds:>5} {alone_s:>8.1f} {fused_s:>8.1f} {alone_s / fused_s:>7.1f}x {finals.max():>13.1e} "
              f"{np.median(finals):>9.1e} {int((finals > 1e-2).sum()):>7} {str(worst[1] or '-'):>15} "
              f"{max(r[2] for r in rows):>14.2f}x", flush=True)


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small CPU run of the in-process rows")
    parser.add_argument("--in-process", action="store_true", help="train_group against runner.train, no queue")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--alone", type=int, default=None, help="jobs in the alone row (in-process)")
    parser.add_argument("--sweeps", default=",".join(SWEEPS), help="whole command: which sweeps")
    parser.add_argument("--jobs", type=int, default=None, help="whole command: jobs per sweep [the issue's]")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"whole command: which rows ({', '.join(ROWS)}; K=1 always runs: the baseline)")
    parser.add_argument("--unfused-jobs", type=int, default=128, help="whole command: at most this many jobs in "
                        "the unfused rows (they take longest; jobs/h is a rate)")
    parser.add_argument("--lrs-per-seed", type=int, choices=range(1, 5), default=4,
                        help="whole command: learning rates per seed (4: the issue's grid, where a fused group's "
                        "members of one seed share data and initial weights; 1: every job its own seed)")
    parser.add_argument("--agreement", action="store_true", help="fused against alone per lr (with --quick: tiny, CPU)")
    parser.add_argument("--width", type=int, default=1024, help="agreement: the standard workload's width")
    parser.add_argument("--lrs", default="0.08,0.02", help="agreement: learning rates")
    parser.add_argument("--seeds", type=int, default=None, help="agreement: seeds per lr [48; 3 with --quick]")
    args = parser.parse_args()
    if args.agreement:
        return agreement_main(args)
    if not (args.quick or args.in_process):
        return command_main(args)
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    steps = args.steps or (60 if args.quick else 500)
    n_alone = args.alone or (2 if args.quick else 8)
    plan = QUICK if args.quick else FULL
    if device == "cpu":
        torch.set_num_threads(1)
    commit = _commit()
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(f"fused benchmark  {device} ({name})  torch {torch.__version__}  git {commit}  {steps} steps per job")
    header = f"{'workload':<14} {'row':<12} {'jobs':>5} {'seconds':>8} {'model-steps/s':>14} {'vs alone':>9} {'max rel diff':>13}"
    print(header)
    for workload, ks in plan.items():
        base = WORKLOADS[workload]
        alone_cfgs = configs(base, n_alone, steps)
        runner.train(dict(alone_cfgs[0], steps=5), device=device)  # warm-up: imports, CUDA context, cuBLAS
        seconds, alone = timed(lambda: [runner.train(c, device=device) for c in alone_cfgs])
        alone_rate = n_alone * steps / seconds
        print(f"{workload:<14} {'alone':<12} {n_alone:>5} {seconds:>8.2f} {alone_rate:>14,.0f} {1.0:>8.1f}x {'':>13}")
        finals = [r.summary["final_test_loss"] for r in alone]
        for k in ks:
            seconds, fused = timed(lambda: train_group(configs(base, k, steps), device=device))
            rate = k * steps / seconds
            diff = max(abs(f.summary["final_test_loss"] - a) / abs(a) for f, a in zip(fused, finals))
            note = "" if fused[0].summary.get("fused") == k else f"  ({fused[0].summary.get('fused')})"
            print(f"{workload:<14} {'fused K=' + str(k):<12} {k:>5} {seconds:>8.2f} {rate:>14,.0f} "
                  f"{rate / alone_rate:>8.1f}x {diff:>13.1e}{note}")


if __name__ == "__main__":
    main()
