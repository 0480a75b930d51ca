"""Hostile files and rows (issue 16 items 4 and 5), through the real CLI: refused within a second and
in one line, or shown with their control characters escaped, and nothing written outside the working
folder. The one-line refusals themselves are rows of tests/system/test_bad_input.py; here is what a
table row cannot say: time, a FIFO, and rows that bypassed submit."""
from __future__ import annotations

import os
import time

from support.databases import sql
from support.hostile import ALIAS_BOMB, MERGE_BOMB, OK

import runner
from runner.queue.store import JobOutcome, JobStatus, Store

ESCAPE = "\x1b[2J\x1b[Hfake line\r\u202eevil"


def test_a_fifo_as_the_grid_file_is_refused_at_once(run_cli, tmp_path):
    os.mkfifo(tmp_path / "grid.yaml")
    t0 = time.monotonic()
    out = run_cli("submit", "grid.yaml", timeout=30)
    assert out.returncode == 2 and "is not a regular file" in out.stderr, out.stderr
    assert time.monotonic() - t0 < 10 and not (tmp_path / "jobs.db").exists()


def test_bombs_are_refused_within_a_second(tmp_path, show):
    """Timed in process (the CLI's start-up is not the point): nine levels of aliases (9**9 values) and
    forty levels of doubling merge keys."""
    for name, text in (("alias", ALIAS_BOMB), ("merge", MERGE_BOMB), ("nesting", "a: " + "[" * 600 + "]" * 600)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        t0 = time.perf_counter()
        try:
            runner.submit(str(path), db=str(tmp_path / "jobs.db"))
        except runner.UserError as exc:
            took = time.perf_counter() - t0
            show(f"{name} bomb ({len(text)} bytes): refused in {took:.3f} s: {str(exc)[:90]}")
            assert took < 1.0
        else:
            raise AssertionError(f"the {name} bomb was accepted")
    assert not (tmp_path / "jobs.db").exists()


def _hostile_sweep(db: str, name: str) -> None:
    """A sweep whose name no submit would accept, written as a row straight into the table (a shared
    queue's INSERT), with one finished job."""
    grid = os.path.join(os.path.dirname(db), "ok.yaml")
    with open(grid, "w") as f:
        f.write(OK + "grid: {seed: [0]}\n")
    runner.submit(grid, db=db)
    sql(db, "UPDATE jobs SET sweep = :name", {"name": name})
    with Store(db) as store:
        job = store.claim("w", host="h\x1b[31m", device="cpu")
        store.finish(job.id, job.token, JobOutcome(JobStatus.FAILED, {"final_test_loss": 0.5},
                                                   error=f"ValueError: {ESCAPE}", permanent=True))


def test_control_characters_from_rows_reach_no_terminal_raw(run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    _hostile_sweep(db, f"s{ESCAPE}")
    for args in (("status",), ("jobs",), ("show", "1"), ("results",), ("cancel", "--sweep", "nosuch")):
        out = run_cli(*args, "--db", db)
        for stream in (out.stdout, out.stderr):
            assert "\x1b" not in stream and "\r" not in stream and "\u202e" not in stream, (args, stream)
        if args[0] != "results":  # which hides the sweep and error columns
            assert "\\x1b[2J" in out.stdout + out.stderr, (args, out.stdout, out.stderr)


def test_a_report_of_a_sweep_named_like_a_path_stays_in_the_working_folder(run_cli, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    db = str(tmp_path / "jobs.db")
    for name in ("../../escaped", "/tmp/absolute-escape"):
        _hostile_sweep(db, name)
        out = run_cli("report", "--db", db, cwd=work)
        assert out.returncode == 0, out.stderr
        assert not (tmp_path.parent / "escaped-report").exists() and not os.path.exists("/tmp/absolute-escape-report")
        made = [p for p in work.iterdir() if p.is_dir()]
        assert len(made) == 1 and "/" not in made[0].name and not made[0].name.startswith("."), made
        assert (made[0] / "summary.md").exists()
        for p in made:
            for f in p.iterdir():
                f.unlink()
            p.rmdir()
        os.remove(db)
