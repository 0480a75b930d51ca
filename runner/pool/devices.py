"""Which devices workers run on: parse --devices and map GPU indices to CUDA_VISIBLE_DEVICES."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class Device:
    """One device a worker is pinned to: label shown to users ('cuda:1', 'cpu') and the
    CUDA_VISIBLE_DEVICES value its worker gets ('' for CPU workers)."""

    label: str
    visible: str

    @property
    def is_cpu(self) -> bool:
        return self.label == "cpu"


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set (Slurm sets it), else all GPUs."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(_count_gpus())]


def _count_gpus() -> int:
    """Count GPUs without creating a CUDA context here (the supervisor never uses the GPU)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def parse_devices(spec: str | None) -> list[Device]:
    """'cpu', '0,1' or None/'all' (every visible GPU, or the CPU when there is none)."""
    spec = (spec or "all").strip().lower()
    if spec == "cpu":
        return [Device("cpu", "")]
    if spec != "all" and not all(p.strip() == "cpu" or p.strip().isdecimal() for p in spec.split(",")):
        raise UserError(f"--devices {spec!r}: expected 'cpu' or GPU indices like 0,1 (for CPU workers: --devices cpu)")
    gpus = visible_gpus()
    if spec == "all":
        return [Device(f"cuda:{i}", gpus[i]) for i in range(len(gpus))] or [Device("cpu", "")]
    devices = []
    for part in spec.split(","):
        part = part.strip()
        if part == "cpu":
            devices.append(Device("cpu", ""))
            continue
        i = int(part)
        if i >= len(gpus):
            have = f"GPUs 0-{len(gpus) - 1}" if gpus else "no CUDA GPU"
            raise UserError(f"--devices {spec!r}: there is no GPU {i} (this machine has {have}); use --devices cpu or a listed GPU")
        devices.append(Device(f"cuda:{i}", gpus[i]))
    if len(set(devices)) != len(devices):
        raise UserError(f"--devices {spec!r} lists a device twice; use --per-device for several workers per device")
    return devices


# What one worker process holds on its GPU for a small network's job: the CUDA context, cuBLAS
# workspaces and, with step capture (the default), a graph's memory pool. Measured by nvidia-smi with
# benchmarks/sweep.py on an H200 (torch 2.11), standard workload: 836-854 MiB per eager worker,
# 1.3-1.8 GiB captured, 1.1-1.3 GiB captured under MPS.
DEFAULT_WORKER_MIB = 2048


def gpu_free_mib() -> dict[str, int]:
    """Free memory (MiB) per GPU id as nvidia-smi reports it; empty when nvidia-smi is missing."""
    if not shutil.which("nvidia-smi"):
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    free = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdecimal() and parts[1].isdecimal():
            free[parts[0]] = int(parts[1])
    return free


def check_fits(devices: list[Device], per_device: int, worker_mib: int) -> None:
    """Refuse --per-device K when K workers of about worker_mib each cannot fit in a GPU's free memory."""
    free = gpu_free_mib()
    for device in devices:
        have = free.get(device.visible)
        if device.is_cpu or have is None:
            continue
        if per_device * worker_mib > have:
            fit = have // worker_mib
            fix = f"use --per-device {fit}" if fit else "free memory on that GPU or pick another with --devices"
            raise UserError(f"--per-device {per_device} does not fit on GPU {device.label}: {have:,} MiB free and each "
                            f"worker needs about {worker_mib:,} MiB (--worker-mib); at most {fit} fit: {fix}")
