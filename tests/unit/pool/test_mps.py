"""CUDA MPS for several workers per GPU: when the supervisor starts its private daemon, when it
joins one, when it runs without, and that the daemon is always quit and cleaned away.

This machine has no GPU: the daemon is a stand-in `nvidia-cuda-mps-control` on PATH that makes
and removes the control pipe as the real one does, and the client check is replaced. The GPU
test at the end runs the real daemon with real workers.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.errors import UserError
from runner.pool import mps
from runner.pool.devices import Device

FAKE_CONTROL = """#!/bin/sh
# stand-in for nvidia-cuda-mps-control: -f makes the control pipe and runs until "quit" on stdin removes it
echo "args $* pipe $CUDA_MPS_PIPE_DIRECTORY" >> "$MPS_CALLS"
if [ "$1" = "-f" ]; then
  [ -n "$MPS_FAIL_START" ] && { echo "An instance of this daemon is already running" >&2; exit 1; }
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"
  while [ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ]; do sleep 0.02; done
  exit 0
fi
read cmd; echo "stdin $cmd" >> "$MPS_CALLS"
[ "$cmd" = quit ] && rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
exit 0
"""

GPU0, GPU1, CPU = Device("cuda:0", "0"), Device("cuda:1", "1"), Device("cpu", "")


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in daemon on PATH; returns the file its calls are logged to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / mps.CONTROL
    exe.write_text(FAKE_CONTROL)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPS_CALLS", str(calls))
    return calls


@pytest.fixture(autouse=True)
def no_daemon_around(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MPS settings from the environment, no system daemon, and whatever a test sets is undone."""
    for key in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(mps, "SYSTEM_PIPE_DIR", tmp_path / "no-system-daemon")


def test_no_daemon_where_none_is_wanted(control):
    assert mps.start("off", [GPU0], 8) == (None, "MPS off (--mps off)")
    assert mps.start("auto", [GPU0, GPU1], 1) == (None, "MPS not used: one worker per GPU")
    assert mps.start("auto", [CPU], 4) == (None, "MPS not used: no GPU workers")
    with pytest.raises(UserError, match=r"^--mps on needs GPU workers; drop --mps or pick GPUs with --devices$"):
        mps.start("on", [CPU], 2)
    assert control.read_text() == ""  # the daemon was never asked anything


def test_without_the_control_program(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    daemon, note = mps.start("auto", [GPU0], 4)
    assert daemon is None
    assert note == "MPS not used: nvidia-cuda-mps-control is not on the PATH (the 4 workers per GPU take turns)"
    with pytest.raises(UserError, match="^--mps on: nvidia-cuda-mps-control is not on the PATH .*use --mps off$"):
        mps.start("on", [GPU0], 4)


def test_workers_join_a_daemon_that_is_already_running(control, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/srv/mps-pipe")
    assert mps.start("auto", [GPU0], 2) == (None, "MPS: workers join the daemon already listening at /srv/mps-pipe")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY")
    system = tmp_path / "system-mps"
    system.mkdir()
    (system / "control").touch()
    monkeypatch.setattr(mps, "SYSTEM_PIPE_DIR", system)
    assert mps.start("on", [GPU0], 1) == (None, f"MPS: workers join the daemon already listening at {system}")
    assert control.read_text() == ""


def test_a_private_daemon_is_started_for_the_workers_and_quit_after(control, monkeypatch):
    monkeypatch.setattr(mps, "_PROBE", "")  # the client check passes
    daemon, note = mps.start("auto", [GPU0, GPU1], 2)
    assert daemon is not None and note == f"MPS: private daemon in {daemon.folder} for 2 workers per GPU"
    pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])  # what spawned workers inherit
    assert pipe.parent == daemon.folder and daemon.folder.name.startswith("runner-mps-")
    assert Path(os.environ["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
    assert (pipe / "control").exists()
    daemon.stop()
    assert control.read_text().splitlines() == [f"args -f pipe {pipe}", f"args  pipe {pipe}", "stdin quit"]
    assert daemon.process.returncode == 0  # it had quit before the folder went
    assert not daemon.folder.exists()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ and "CUDA_MPS_LOG_DIRECTORY" not in os.environ


def test_a_daemon_no_client_can_reach_is_quit_and_the_pool_runs_without(control, monkeypatch):
    monkeypatch.setattr(mps, "_PROBE", "import sys; sys.exit('CUDA driver error 805')")
    daemon, note = mps.start("auto", [GPU1], 4)
    assert daemon is None
    assert note == "MPS not used: the daemon did not work (a test client on cuda:1 failed: CUDA driver error 805)"
    calls = control.read_text().splitlines()
    assert calls[0].startswith("args -f pipe /tmp/runner-mps-") and calls[-1] == "stdin quit"
    assert not Path(calls[0].split(" pipe ")[1]).parent.exists()  # its folder is gone
    assert "CUDA_MPS_PIPE_DIRECTORY" not in os.environ
    with pytest.raises(UserError, match=r"^--mps on: the MPS daemon did not work \(a test client on cuda:0 failed: "
                                        r"CUDA driver error 805\); use --mps off$"):
        mps.start("on", [GPU0], 1)


def test_a_daemon_that_does_not_start_is_reported(control, monkeypatch):
    monkeypatch.setenv("MPS_FAIL_START", "1")
    assert mps.start("auto", [GPU0], 2) == (
        None, "MPS not used: the daemon did not work (An instance of this daemon is already running)")
    with pytest.raises(UserError, match=r"already running\); use --mps off$"):
        mps.start("on", [GPU0], 2)
