"""`runner export tensorboard` through the real command, and the runs it writes served by TensorBoard
itself: its Scalars data and its HParams table, as the browser asks for them."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install -e '.[dev]' (scripts/test.sh does)")

from support import tensorboard_runs as mixed
from support.processes import ROOT, TESTS


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return mixed.make_db(tmp_path_factory.mktemp("tb") / "jobs.db")


def test_the_command_prints_one_line_with_the_runs_the_skipped_jobs_and_how_to_view_them(db, run_cli, tmp_path):
    done = run_cli("export", "tensorboard", "--db", db, "--sweep", mixed.SWEEP, "-o", "my runs")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"wrote 7 TensorBoard runs of sweep 'mixed' to my runs \(\d+\.\d kB\), skipped 2 unfinished "
                        r"jobs \(1 running, 1 pending\); view them: tensorboard --logdir 'my runs'\n", done.stdout)
    assert len(list((tmp_path / "my runs").glob("job-*/events.out.tfevents.*"))) == 7
    again = run_cli("export", "tensorboard", "--db", db, "--sweep", mixed.SWEEP, "-o", "my runs")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "pass --overwrite" in again.stderr
    replaced = run_cli("export", "tensorboard", "--db", db, "--sweep", "other", "-o", "my runs", "--overwrite")
    assert replaced.returncode == 0 and replaced.stdout.startswith("wrote 1 TensorBoard runs of sweep 'other'")
    assert sorted(p.name for p in (tmp_path / "my runs").glob("job-*")) == ["job-000010"]


@pytest.mark.parametrize("args, message", [
    (["--sweep", "nope"], "error: no sweep 'nope' in "),
    ([], "holds 2 sweeps: name one with --sweep"),
    (["--sweep", mixed.SWEEP], "'mine' is not empty and holds no runner export"),
])
def test_user_mistakes_end_in_one_line_and_exit_2(db, run_cli, tmp_path, args, message):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    done = run_cli("export", "tensorboard", "--db", db, *args, "-o", "mine")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert done.stdout == "" and [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_without_tensorboard_the_command_names_the_extra_in_one_line(db, run_cli, tmp_path):
    fake = tmp_path / "site"  # a tensorboard that does not import, as when it is not installed
    (fake / "tensorboard").mkdir(parents=True)
    (fake / "tensorboard" / "__init__.py").write_text("raise ImportError('No module named tensorboard (test)')\n")
    env = {"PYTHONPATH": os.pathsep.join(map(str, (fake, ROOT, TESTS)))}
    done = run_cli("export", "tensorboard", "--db", db, "--sweep", mixed.SWEEP, "-o", "runs", env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.rstrip().endswith("pip install 'runner[tensorboard]'")
    assert not (tmp_path / "runs").exists()


def test_tensorboard_serves_the_curves_and_the_hparams_table(db, run_cli, tmp_path):
    assert run_cli("export", "tensorboard", "--db", db, "--sweep", mixed.SWEEP, "-o", "runs").returncode == 0
    with _tensorboard(tmp_path / "runs") as url:
        points = _poll(lambda: _get(f"{url}data/plugin/scalars/scalars?run=job-000001&tag=train_loss"))
        assert [(step, value) for _, step, value in points] == [(s, mixed.as_float32(v)) for s, _, v in
                                                                mixed.points(0) if _ == "train_loss"]
        request = {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                   "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                   "colParams": [{"hparam": k, "includeInResult": True} for k in mixed.AXES]
                   + [{"metric": {"tag": "summary/final_test_loss", "group": ""}, "includeInResult": True}]}
        table = _poll(lambda: _loaded(_post(f"{url}data/plugin/hparams/session_groups", request)))
    assert table["totalSize"] == 7  # one row per finished job
    first = next(g for g in table["sessionGroups"] if g["name"] == "job-000001")
    assert first["hparams"] == {"lr": 0.1, "act": "relu", "widths": "[8,8]", "bn": True}
    losses = {m["name"]["tag"]: m["value"] for m in first["metricValues"]}
    assert losses["summary/final_test_loss"] == mixed.as_float32(mixed.summary(0)["final_test_loss"])


class _tensorboard:
    """`python -m tensorboard.main --logdir DIR --port 0` in its own process group, stopped at the end;
    entering gives the URL it serves."""

    def __init__(self, logdir: Path) -> None:
        self.logdir, self.lines = logdir, queue.Queue()

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir),
                                      "--port", "0", "--reload_interval", "1"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            try:
                seen.append(self.lines.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(r" at (http://\S+/) ", seen[-1])
            if found:
                return found.group(1)
        self.__exit__()
        raise AssertionError("tensorboard did not start:\n" + "".join(seen))

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group started above: tensorboard and its data server
        self.proc.wait(timeout=30)


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def _loaded(table: dict) -> dict | None:
    """The table once every run is in it (tensorboard loads them one by one)."""
    return table if table["totalSize"] == 7 else None


def _poll(read, seconds: float = 90):
    """read() until it gives something (tensorboard loads the runs after it starts serving)."""
    deadline = time.monotonic() + seconds
    while not (got := read()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert got, "tensorboard served no data in time"
    return got
