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


@pytest.fixture
def show(capsys: pytest.CaptureFixture):
    """Print a test's figures so they appear in plain pytest and CI logs, not only with -s."""

    def emit(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    return emit


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one intra-op thread, much faster on shared cores; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_sqlite(path: Path, *statements: str) -> Path:
    """Run SQL statements on a SQLite file (made if missing) and commit: a database another program left."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        for statement in statements:
            con.execute(statement)
        con.commit()
    finally:
        con.close()
    return path
