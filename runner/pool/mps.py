"""CUDA MPS for `--per-device K`: a private MPS daemon so K workers' kernels share a GPU at once.

Without MPS, processes on one GPU take turns (time-slicing): K workers replaying captured steps
get no more done than one. Under MPS their kernels run side by side (measured on an H200 with
benchmarks/concurrency.py: 8 captured workers at width 256 did 2.6x the steps of one). The
supervisor starts its own control daemon with private pipe and log folders, so it touches no
other user's processes and changes no GPU setting, and quits it when the pool ends. Workers find
it through CUDA_MPS_PIPE_DIRECTORY, which they inherit at spawn.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .devices import Device

log = logging.getLogger("runner.mps")

MODES = ("auto", "on", "off")
CONTROL = "nvidia-cuda-mps-control"
SYSTEM_PIPE_DIR = Path("/tmp/nvidia-mps")  # where a daemon started without settings listens

# A client's first CUDA call, through the driver API with ctypes: connects to the MPS server the
# environment names (or fails) without importing torch. Exit code 0: a context could be made.
_PROBE = """
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
for call in (lambda: cuda.cuInit(0), lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0),
             lambda: cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), lambda: cuda.cuCtxDestroy_v2(ctx)):
    code = call()
    if code:
        sys.exit(f"CUDA driver error {code}")
"""


@dataclass
class MpsDaemon:
    """A control daemon this process started (in the foreground, so its exit can be awaited);
    `stop()` quits it and removes its folders."""

    folder: Path
    env: dict[str, str]
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:  # still running (it may have died on its own)
            try:
                subprocess.run([CONTROL], input="quit\n", text=True, env={**os.environ, **self.env},
                               capture_output=True, timeout=30)
                self.process.wait(timeout=30)  # it leaves once its server and clients are gone
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("MPS daemon in %s did not quit (%s); ending it", self.folder, exc)
                self.process.kill()
                self.process.wait()
        for key, value in self.env.items():
            if os.environ.get(key) == value:
                del os.environ[key]
        shutil.rmtree(self.folder, ignore_errors=True)


def existing_daemon() -> str | None:
    """Where an MPS daemon this user's workers would join already listens (None: there is none)."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY")
    if pipe:
        return pipe
    return str(SYSTEM_PIPE_DIR) if (SYSTEM_PIPE_DIR / "control").exists() else None


def check_mode(mode: str, devices: list[Device]) -> None:
    """Refuse a mode that cannot apply, before anything starts."""
    if mode not in MODES:
        raise UserError(f"--mps {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "on" and all(d.is_cpu for d in devices):
        raise UserError("--mps on needs GPU workers; drop --mps or pick GPUs with --devices")


def start(mode: str, devices: list[Device], per_device: int) -> tuple[MpsDaemon | None, str]:
    """Start a private daemon when the pool wants one; (the daemon or None, a line saying what was done).

    auto: only for several workers per GPU, and only where it works (else the pool runs without);
    on: always for GPU workers, and a failure is the user's error; off: never."""
    check_mode(mode, devices)
    gpus = [d for d in devices if not d.is_cpu]
    if mode == "off":
        return None, "MPS off (--mps off)"
    if not gpus:
        return None, "MPS not used: no GPU workers"
    if mode == "auto" and per_device == 1:
        return None, "MPS not used: one worker per GPU"
    found = existing_daemon()
    if found:
        return None, f"MPS: workers join the daemon already listening at {found}"
    if not shutil.which(CONTROL):
        if mode == "on":
            raise UserError(f"--mps on: {CONTROL} is not on the PATH (it comes with the NVIDIA driver); "
                            "add it to PATH or use --mps off")
        return None, f"MPS not used: {CONTROL} is not on the PATH (the {per_device} workers per GPU take turns)"
    daemon, why = _start_private(gpus[0])
    if daemon is None:
        if mode == "on":
            raise UserError(f"--mps on: the MPS daemon did not work ({why}); use --mps off")
        return None, f"MPS not used: the daemon did not work ({why})"
    return daemon, f"MPS: private daemon in {daemon.folder} for {per_device} workers per GPU"


def _start_private(probe_device: Device) -> tuple[MpsDaemon | None, str]:
    """Start a daemon in fresh folders and check a client can connect; (daemon, '') or (None, why)."""
    folder = Path(tempfile.mkdtemp(prefix="runner-mps-", dir="/tmp"))  # short: the pipe path has a length limit
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    for path in env.values():
        Path(path).mkdir()
    control = folder / "pipe" / "control"
    try:
        with open(folder / "log" / "foreground.log", "wb") as out:
            # Its own session: a Ctrl-C meant for the pool must not end it while workers checkpoint.
            process = subprocess.Popen([CONTROL, "-f"], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return None, str(exc)
    deadline = time.monotonic() + 20
    while not control.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not control.exists():
        if process.poll() is None:
            process.kill()
        process.wait()
        said = (folder / "log" / "foreground.log").read_text(errors="replace").strip().splitlines()
        shutil.rmtree(folder, ignore_errors=True)
        return None, said[-1] if said else f"{CONTROL} -f exited {process.returncode} without opening its pipe"
    daemon = MpsDaemon(folder, env, process)
    probe_env = {**os.environ, **env, "CUDA_VISIBLE_DEVICES": probe_device.visible}
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=probe_env, capture_output=True, text=True, timeout=60)
        said = probe.stderr.strip().splitlines()
        failed = "" if probe.returncode == 0 else said[-1] if said else f"exit code {probe.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        failed = str(exc)
    if failed:
        daemon.stop()
        return None, f"a test client on {probe_device.label} failed: {failed}"
    os.environ.update(env)  # spawned workers inherit it
    return daemon, ""
