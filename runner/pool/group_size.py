"""How many jobs of one fusion key a worker claims and trains as one fused group.

`--fuse N` asks for at most N (1: every job alone); `--fuse auto` (the default) for the pool's fair
share of the pending jobs (so every worker of the pool gets work, one GPU does not take a sweep
the others could share) up to the cap below on that kind of device, fewer where a job's own `fuse`
caps its group, and, on a GPU, fewer where the group would not fit in the worker's share of the
GPU's memory (the extras go back to the queue unstarted). Torch-free: the supervisor checks it.
"""
from __future__ import annotations

from ..errors import UserError

# Measured with benchmarks/fused.py (benchmarks/RESULTS.md): on an H200 the per-model-step cost of
# tiny networks still falls up to K=1024; on the CPU a group stops paying beyond K=16 or so.
AUTO_CAP_GPU = 1024
AUTO_CAP_CPU = 16
MEMORY_FRACTION = 0.8  # of a worker's share of its GPU's memory, what a fused group may plan to use


def parse_fuse(value: int | str) -> int | str:
    """'auto' or an integer >= 1, from the command line or the API; UserError otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UserError(f"--fuse takes auto or a number of jobs >= 1 (1: each job trains alone), got {value!r}")


def most_jobs(fuse: int | str, on_cpu: bool, pending: int = 0, workers: int = 1) -> int:
    """The most jobs one claim takes under `fuse` ('auto' or a number); with auto, `pending` jobs
    shared among the pool's `workers`."""
    if fuse != "auto":
        return int(fuse)
    share = -(-pending // max(1, workers))  # ceil
    return max(1, min(AUTO_CAP_CPU if on_cpu else AUTO_CAP_GPU, share))
