"""Fused trials inside one process: K jobs of one fusion key trained as one batched model
(runner.train.fused.train_group) against the same jobs trained one after another (runner.train,
step capture on where there is a GPU), measured in the same run.

Rows per workload: alone (the baseline: a few jobs, their mean time per job), then fused groups of K.
Columns: model-steps/s (jobs x steps / seconds of training, set-up included), the ratio to the
alone row, and the largest relative difference of a member's final test loss from the same job
alone (the jobs alone are the group's first members).

    python benchmarks/fused.py                 # tiny (moons, width 32, batch 64) and standard (d 200, batch 1024, width 256) on the GPU
    python benchmarks/fused.py --quick         # a small CPU smoke run
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent  # this folder holds queue.py, which would shadow the stdlib's queue
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small CPU run")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--alone", type=int, default=None, help="jobs in the alone row")
    args = parser.parse_args()
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    steps = args.steps or (60 if args.quick else 500)
    n_alone = args.alone or (2 if args.quick else 8)
    plan = QUICK if args.quick else FULL
    if device == "cpu":
        torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                            text=True).stdout.strip()
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
