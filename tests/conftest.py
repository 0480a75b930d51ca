"""Shared fixtures: run the real CLI in a subprocess, in a temporary working folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("RUNNER_DB", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `runner ARGS...` in tmp_path; returns the CompletedProcess (text)."""

    def run(*args: str, timeout: float = 240, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd or tmp_path, env=cli_env(env),
                              capture_output=True, text=True, timeout=timeout)

    return run


def worker_pids(supervisor_pid: int) -> list[int]:
    """Pids of a supervisor's live worker processes (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True).stdout.split()
    pids = []
    for pid in out:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except FileNotFoundError:  # exited since pgrep saw it
            pass
    return pids
