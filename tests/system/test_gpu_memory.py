"""--per-device K is refused when K workers cannot fit in a GPU's free memory.

The GPUs here are a stand-in `nvidia-smi` on PATH (this machine has none); `runner workers` runs
for real and must stop before it spawns anything or touches the queue.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import cli_env

from runner.errors import UserError
from runner.pool.devices import Device, check_fits

FAKE_SMI = """#!/bin/sh
# two GPUs: 0 with 8000 MiB free, 1 with 2500 MiB free
case "$*" in
  *-L*) echo "GPU 0: Fake H200 (UUID: GPU-0)"; echo "GPU 1: Fake H200 (UUID: GPU-1)";;
  *memory.free*) echo "0, 8000"; echo "1, 2500";;
  *) exit 1;;
esac
"""


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return cli_env({"PATH": path})


def test_check_fits_names_the_largest_k(fake_gpus):
    gpus = [Device("cuda:0", "0"), Device("cuda:1", "1")]
    check_fits(gpus, per_device=2, worker_mib=1024)  # 2 x 1024 fits in both
    with pytest.raises(UserError) as err:
        check_fits(gpus, per_device=4, worker_mib=1024)
    assert str(err.value) == ("--per-device 4 does not fit on GPU cuda:1: 2,500 MiB free and each worker needs about "
                              "1,024 MiB (--worker-mib); at most 2 fit: use --per-device 2")
    with pytest.raises(UserError, match="at most 0 fit: free memory on that GPU or pick another with --devices"):
        check_fits([Device("cuda:1", "1")], per_device=1, worker_mib=4096)
    check_fits([Device("cpu", "")], per_device=64, worker_mib=10**6)  # CPU workers are not checked


def test_workers_refuse_k_that_cannot_fit(fake_gpus, tmp_path):
    db = tmp_path / "jobs.db"
    grid = tmp_path / "grid.yaml"
    grid.write_text("sweep: mem\nbatchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, width: 4, steps: 5, batch_size: 8}\n")
    sub = subprocess.run([sys.executable, "-m", "runner.cli", "submit", str(grid), "--db", str(db)], env=fake_gpus,
                         capture_output=True, text=True, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    before = db.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "workers", "--devices", "0,1", "--per-device", "8",
                           "--db", str(db)], env=fake_gpus, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: --per-device 8 does not fit on GPU cuda:0: 8,000 MiB free and each worker needs about "
                     "2,048 MiB (--worker-mib); at most 3 fit: use --per-device 3"], proc.stderr
    assert db.read_bytes() == before  # nothing claimed, nothing registered
