"""How several jobs share one GPU: aggregate steps/s of K jobs at once, as K processes (the way
`--per-device K` runs them), K processes under CUDA MPS, and K threads of one process.

Each job is runner's own trainloop on the standard workload (gaussian_teacher online, d = 200,
batch 1024, mlp depth 2, SGD, MSE, fp32, an evaluation every 100 steps), eager or captured. Every
process first runs a short warm-up job (imports, CUDA init and cuBLAS set-up stay out of the
clock), then all K jobs start together at a barrier; the row's figure is all their steps over the
time from the first start to the last finish. The baseline row is one eager job alone. Every job
trains the same seed, so every row's final test loss must equal the baseline's.

    python benchmarks/concurrency.py                          # widths 256,1024; K 1,2,4,8
    python benchmarks/concurrency.py --widths 256 --ks 1,4 --modes process,mps
    python benchmarks/concurrency.py --quick                  # CPU smoke run
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # queue.py here shadows the stdlib's
sys.path.insert(0, str(ROOT))

from runner.pool import mps  # noqa: E402  (no torch: spawned children import torch themselves)
from runner.pool.devices import parse_devices  # noqa: E402


def job_config(width: int, steps: int, capture: bool, quick: bool) -> dict:
    d, batch = (8, 64) if quick else (200, 1024)
    return {"batchfn": "gaussian_teacher", "model": "mlp", "d": d, "batch_size": batch, "width": width, "depth": 2,
            "lr": 0.01, "steps": steps, "eval_every": 100, "n_test": 1000, "capture": capture, "seed": 0}


def _timed_job(config: dict, device: str, stream_per_thread: bool) -> tuple[float, float, int, float | None]:
    """Run one job; (start, end, steps, final test loss)."""
    import torch

    from runner.train.loop import train

    if stream_per_thread and device != "cpu":
        with torch.cuda.stream(torch.cuda.Stream()):
            return _timed_job(config, device, False)
    t0 = time.perf_counter()
    result = train(config, device=device)
    if device != "cpu":
        torch.cuda.synchronize()
    return t0, time.perf_counter(), result.summary["steps_run"], result.summary["final_test_loss"]


def _process_main(config: dict, device: str, threads: int, barrier, out) -> None:
    """One process: a warm-up job, then `threads` jobs at once once every process is ready."""
    import torch

    torch.set_num_threads(1)
    _timed_job({**config, "steps": 300}, device, threads > 1)  # warm-up: imports, CUDA init, cuBLAS
    barrier.wait()
    if threads == 1:
        out.put(_timed_job(config, device, False))
        return
    results: list = []
    workers = [threading.Thread(target=lambda: results.append(_timed_job(config, device, True))) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for r in results:
        out.put(r)


@contextlib.contextmanager
def under_mps(k: int) -> Iterator[None]:
    """The daemon `runner workers` would start for K workers on GPU 0 (runner.pool.mps); children
    spawned inside inherit its settings. A daemon that is already running is joined instead."""
    daemon, _ = mps.start("on", parse_devices("0"), k)
    try:
        yield
    finally:
        if daemon is not None:
            daemon.stop()


def run_row(config: dict, device: str, k: int, mode: str) -> dict:
    """K jobs at once in `mode` ('process', 'mps' or 'thread'); aggregate steps/s and their losses."""
    ctx = mp.get_context("spawn")
    procs, threads = (k, 1) if mode in ("process", "mps") else (1, k)
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    children = [ctx.Process(target=_process_main, args=(config, device, threads, barrier, out)) for _ in range(procs)]
    for c in children:
        c.start()
    got = [out.get(timeout=900) for _ in range(k)]
    for c in children:
        c.join()
    start, end = min(g[0] for g in got), max(g[1] for g in got)
    return {"steps_s": sum(g[2] for g in got) / (end - start), "wall": end - start, "losses": [g[3] for g in got]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,1024")
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--modes", default="process,mps,thread")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--capture", default="on", help="on, off or off,on (the baseline is always eager)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: width 16, K 1,2, processes and threads")
    args = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    if args.quick:
        args.widths, args.ks, args.modes, args.steps, args.capture = "16", "1,2", "process,thread", 200, "on"
    modes = args.modes.split(",")
    if "mps" in modes and (device == "cpu" or not shutil.which(mps.CONTROL)):
        print(f"# mps rows skipped: no GPU or no {mps.CONTROL} on the PATH")
        modes.remove("mps")
    where = torch.cuda.get_device_name(0) if device != "cpu" else "CPU"
    print(f"# concurrency benchmark  {time.strftime('%Y-%m-%d')}  {where}  torch {torch.__version__}")
    print(f"# {args.steps} steps per job; aggregate steps/s of K jobs started together; base = 1 eager job\n")
    header = f"{'width':>6} {'mode':>8} {'capture':>8} {'K':>3} {'wall s':>8} {'steps/s':>9} {'vs base':>8} {'losses equal':>13}"
    print(header)
    print("-" * len(header))
    for width in map(int, args.widths.split(",")):
        base = run_row(job_config(width, args.steps, False, args.quick), device, 1, "process")
        rows = [("process", False, 1, base)]
        for capture in [c == "on" for c in args.capture.split(",")]:
            config = job_config(width, args.steps, capture, args.quick)
            for mode in modes:
                for k in map(int, args.ks.split(",")):
                    if (mode, capture, k) == ("process", False, 1) or (mode != "process" and k == 1):
                        continue
                    with under_mps(k) if mode == "mps" else contextlib.nullcontext():
                        rows.append((mode, capture, k, run_row(config, device, k, mode)))
                    print(f"  ran width {width} {mode} capture {capture} K={k}", file=sys.stderr, flush=True)
        ref = base["losses"][0]
        for mode, capture, k, r in rows:
            same = all(x == ref for x in r["losses"])
            print(f"{width:>6} {mode:>8} {'on' if capture else 'off':>8} {k:>3} {r['wall']:>8.2f} {r['steps_s']:>9.0f} "
                  f"{r['steps_s'] / base['steps_s']:>7.2f}x {str(same):>13}")
        print()


if __name__ == "__main__":
    main()
