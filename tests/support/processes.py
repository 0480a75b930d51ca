"""Where things are and how the real command runs: the repository's folders, the environment a
`runner` subprocess gets, and the worker processes a supervisor has spawned."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"  # on PYTHONPATH: the plug-in modules jobs name (plugins_for_tests:...)
EXAMPLES = ROOT / "examples"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for name in ("RUNNER_DB", "RUNNER_SIGNING_KEY", "RUNNER_SIGNING_KEY_FILE"):  # a developer's settings stay out
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


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


def start_workers(db: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`runner workers` in its own process group, as a shell job would be."""
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--db", db, "--quiet", *args],
                            env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def stop_when(proc: subprocess.Popen, predicate, timeout: float = 90.0) -> str:
    """Once `predicate()` holds, SIGTERM a `start_workers` pool and wait for it to end; its stderr."""
    try:
        wait_for(predicate, timeout=timeout)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return err


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")
