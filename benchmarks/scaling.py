"""Multi-GPU scaling: the same sweep on 1 GPU and on 2 GPUs, wall time of the whole command.

Workload (issue 5): 64 jobs of gaussian_teacher online, d = 200, batch 1024, mlp depth 2 at
width 4096, SGD, MSE, fp32, run by `runner workers --devices 0` and then `--devices 0,1` (same
--per-device), each on a fresh SQLite file. Target: 2-GPU wall <= 0.55x the 1-GPU wall. Final
test losses per job are compared between the two runs (a job computes the same wherever it runs).

    python benchmarks/scaling.py                    # 64 jobs x 2000 steps, per-device 1
    python benchmarks/scaling.py --steps 500 --per-device 2
    python benchmarks/scaling.py --quick            # CPU smoke run (devices cpu, both rows)
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # queue.py would shadow the stdlib's


def _sweep_module():
    """benchmarks/sweep.py, loaded by path (this folder is kept off sys.path)."""
    spec = importlib.util.spec_from_file_location("runner_bench_sweep", HERE / "sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--per-device", type=int, default=1)
    parser.add_argument("--devices", default="0,1", help="the GPUs of the multi-GPU row")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: 4 tiny jobs, 'cpu' for both rows")
    args = parser.parse_args()
    sweep = _sweep_module()
    devices = args.devices.split(",")
    if args.quick:
        args.width, args.jobs, args.steps, devices = 16, 4, 30, ["cpu"]
    import torch

    gpus = [torch.cuda.get_device_name(int(d)) for d in devices if d != "cpu"] if torch.cuda.is_available() else []
    print(f"# scaling benchmark  {time.strftime('%Y-%m-%d')}  {', '.join(gpus) or 'CPU'}  torch {torch.__version__}  "
          f"commit {sweep._commit()}")
    print(f"# {args.jobs} jobs x {args.steps} steps, width {args.width}, per-device {args.per_device}; "
          "wall = the whole `runner workers` command\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="runner-scaling-bench-") as tmp:
        for n, label in ((1, devices[0]), (len(devices), ",".join(devices))):
            rows.append((n, label, sweep.run_sweep(Path(tmp) / f"gpus{n}", width=args.width, jobs=args.jobs,
                                                   steps=args.steps, per_device=args.per_device, capture=True,
                                                   devices=label, quick=args.quick)))
            print(f"  ran devices {label}: {rows[-1][2].wall_s:.1f} s", file=sys.stderr, flush=True)
    base = rows[0][2]
    header = f"{'GPUs':>5} {'devices':>8} {'wall s':>8} {'jobs/h':>9} {'wall vs 1':>10} {'done':>5} {'max rel diff':>13}"
    print(header)
    print("-" * len(header))
    for n, label, r in rows:
        print(f"{n:>5} {label:>8} {r.wall_s:>8.1f} {r.jobs_per_h:>9.0f} {r.wall_s / base.wall_s:>9.3f}x {r.done:>5} "
              f"{sweep._max_rel_diff(base.losses, r.losses):>13.2e}")
    if len(devices) > 1:
        print(f"target: {len(devices)}-GPU wall <= 0.55x the 1-GPU wall")
    else:
        print("one device in both rows (--quick or --devices N): no scaling target to check")


if __name__ == "__main__":
    main()
