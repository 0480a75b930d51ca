"""Smoke runs of the sweep and scaling benchmarks on the CPU: they run, print their tables and
compare per-job losses with the baseline row. No timing assertions (times are the GPU run's)."""
from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import ROOT, cli_env


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=cli_env(), timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sweep_benchmark_quick(show):
    out = _run("sweep.py", "--quick", "--capture", "on")
    show(out)
    assert "## width 16" in out and "best: K=" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("16 ")]
    assert len(rows) == 2  # the eager baseline (K=1), then K=2 with capture (off on the CPU: eager)
    assert all(r[3] == "fp32" and r[7] == "4" for r in rows), rows  # every job done
    assert all(r[-1] == "0" for r in rows), rows  # the same final loss per job as the baseline


@pytest.mark.slow  # two more CLI runs; CI runs it
def test_scaling_benchmark_quick(show):
    out = _run("scaling.py", "--quick")
    show(out)
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2 and all(r[5] == "4" for r in rows), rows


def test_concurrency_benchmark_quick(show):
    out = _run("concurrency.py", "--quick")
    show(out)
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("16 ")]
    # the eager baseline, then captured (eager on the CPU) jobs: one process, two processes, two threads
    assert [(r[1], r[2], r[3]) for r in rows] == [("process", "off", "1"), ("process", "on", "1"),
                                                   ("process", "on", "2"), ("thread", "on", "2")], rows
    assert all(r[-1] == "True" for r in rows[:3]), rows  # processes train exactly what one job alone does


def test_startup_benchmark_quick(show):
    out = _run("startup.py", "--quick")
    show(out)
    lines = out.splitlines()
    assert lines[2].startswith("torch bytecode: "), lines[2]
    table = lines[lines.index("-" * 53) + 1:]
    labels = [line[:44].strip() for line in table[:table.index("")]]
    assert labels == ["python interpreter", "import torch", "CUDA context", "first cuBLAS matmul",
                      "first optimizer (imports torch._dynamo)", "import runner's trainloop and store", "runner --help",
                      "runner workers, one 1-step job: to start", "runner workers, one 1-step job: whole"], out
    imports = [line.split()[0] for line in table[table.index("") + 2:] if line.strip()]
    assert "torch" in imports and "torch._dynamo" in imports, out
