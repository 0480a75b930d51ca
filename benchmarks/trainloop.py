"""runner's trainloop against a plain PyTorch loop on the same work, at several widths.

Workload (issue 5): gaussian_teacher online, d = 200, batch 1024, mlp depth 2 (one hidden
width x width layer), SGD, MSE, fp32. The plain loop is the baseline measured in the same run:
same model, data and steps, no per-step host synchronisation. runner runs with thresholds, an
evaluation and a grab every 100 steps ("all on") and bare, each eager (`capture: false`) and with
its default step capture (CUDA graphs; on the CPU capture is off, so those rows repeat eager).

    python benchmarks/trainloop.py                 # widths 256, 1024, 8192 on the GPU if any
    python benchmarks/trainloop.py --quick         # a small CPU smoke run
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# This folder holds queue.py (the issue names it so), which would shadow the standard library's
# queue module for everything imported below: take the folder off the path, put the repo on it.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from batchfns import gaussian_teacher  # noqa: E402
from runner.train.loop import derive_seeds, train  # noqa: E402
from runner.train.models import MLP  # noqa: E402

D, BATCH, LR = 200, 1024, 0.01
SETUP: list[float] = []  # runner's set-up seconds per run (data, model init on the CPU, optimizer)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(width: int, steps: int, device: torch.device, seed: int = 0) -> tuple[float, float]:
    """The baseline: the loop a researcher would write by hand. Returns (seconds, final loss)."""
    seeds = derive_seeds(seed)
    gen = torch.Generator(device=device).manual_seed(seeds["data"])
    batch = gaussian_teacher(D, BATCH, gen=gen, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["model"])
        model = MLP(D, 1, width=width, depth=2)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    check_at = _check_step(steps)
    _sync(device)
    t0 = time.perf_counter()
    for step in range(steps):
        X, y = batch(step)
        loss = torch.nn.functional.mse_loss(model(X), y)
        if step == check_at:
            kept = loss.detach()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return seconds, float(kept)  # read after the clock stops


def runner_loop(width: int, steps: int, device: torch.device, all_on: bool, capture: bool = True,
                seed: int = 0) -> tuple[float, float]:
    """runner.train on the same work; seconds of its training loop (its set-up, which the plain loop's
    clock also leaves out, is reported apart)."""
    config = dict(batchfn="gaussian_teacher", model="mlp", d=D, batch_size=BATCH, width=width, depth=2, lr=LR,
                  steps=steps, seed=seed, eval_every=0, n_test=0, capture=capture)
    if all_on:
        config.update(eval_every=100, n_test=1000, thresholds=[0.5, 0.1], grabs=["weight_norm"], grab_every=100)
    _sync(device)
    t0 = time.perf_counter()
    out = train(config, device=device)
    _sync(device)
    seconds = time.perf_counter() - t0 - out.summary["setup_s"]
    SETUP.append(out.summary["setup_s"])
    steps_seen, losses = out.curve("batch_loss")
    found = losses[steps_seen == _check_step(steps)]
    return seconds, float(found[0]) if found.size else float("nan")


def _check_step(steps: int) -> int:
    """The step whose loss both loops report (runner records batch_loss every eval_every = 100)."""
    return (steps - 1) // 100 * 100


def _interleaved(variants: dict, repeats: int) -> dict[str, tuple[list[float], float]]:
    """Run the variants in turn, `repeats` rounds: machine drift hits each alike. name -> (seconds, loss)."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            runs[name].append(fn())
    return {name: ([r[0] for r in rs], rs[-1][1]) for name, rs in runs.items()}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="256,1024,8192")
    parser.add_argument("--steps", type=int, default=3000, help="steps per run (width 8192: a sixth of it)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; rows show medians")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small CPU smoke run")
    parser.add_argument("--profile", type=int, metavar="WIDTH", help="profile runner (all on) at this width instead")
    args = parser.parse_args()
    if args.profile:
        return profile(args.profile, args.steps, torch.device(args.device))
    if args.quick:
        args.widths, args.steps, args.repeats, args.device = "32,64", 120, 1, "cpu"
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'} x{torch.get_num_threads()} threads"
    print(f"# trainloop benchmark  {time.strftime('%Y-%m-%d')}  {name}  torch {torch.__version__}  commit {_commit()}")
    print(f"# gaussian_teacher d={D} batch={BATCH}, mlp depth 2, SGD lr={LR}, MSE, fp32; "
          f"median of {args.repeats} interleaved rounds")
    plain_loop(64, 20, device)  # warm-up: CUDA context, kernels, allocator
    header = (f"{'width':>6} {'steps':>6} {'variant':<20} {'seconds':>8} {'steps/s':>9} {'min-max':>11} "
              f"{'vs plain':>9} {'loss@check':>11}")
    print(header)
    print("-" * len(header))
    for width in map(int, args.widths.split(",")):
        steps = args.steps if width <= 1024 else max(20, args.steps // 6)
        results = _interleaved({
            "plain PyTorch": lambda: plain_loop(width, steps, device),
            "runner eager, bare": lambda: runner_loop(width, steps, device, False, capture=False),
            "runner eager, all on": lambda: runner_loop(width, steps, device, True, capture=False),
            "runner, bare": lambda: runner_loop(width, steps, device, False),
            "runner, all on": lambda: runner_loop(width, steps, device, True)}, args.repeats)
        base = steps / statistics.median(results["plain PyTorch"][0])
        for variant, (seconds, loss) in results.items():
            rates = sorted(steps / s for s in seconds)
            rate = statistics.median(rates)
            spread = f"{rates[0]:.0f}-{rates[-1]:.0f}"
            print(f"{width:>6} {steps:>6} {variant:<20} {statistics.median(seconds):>8.3f} {rate:>9.1f} "
                  f"{spread:>11} {rate / base:>8.3f}x {loss:>11.4g}")
        print(f"{'':>6} {'':>6} runner set-up: {min(SETUP):.3f} s (not in the times above)")
        SETUP.clear()
    print("target: runner, all on >= 0.95x plain at every width (runner's rows capture steps by default)")
    print("loss@check: the batch loss at the last step")
    print("divisible by 100, equal for plain and runner-all-on when both did the same work (bare records no series)")


def profile(width: int, steps: int, device: torch.device) -> None:
    """Where runner's time goes: torch.profiler over a whole job, the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    runner_loop(width, 200, device, True)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        seconds, _ = runner_loop(width, steps, device, True)
    print(f"# profile: runner all on, width {width}, {steps} steps, loop {seconds:.3f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
