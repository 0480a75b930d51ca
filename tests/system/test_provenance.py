"""Every result says where it came from (issue 19 items 1 and 2): a submit records the git commit of
the grid's folder (clean or dirty, with a hash of the diff), the versions, host and command line, and
the sweep's notes (description, tags) and grid text; `runner show`, `runner sweeps`, `runner status`,
results() and `runner report` show them."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import runner
from runner.errors import UserError
from runner.provenance import collect, git_state
from runner.queue.store import Store
from runner.queue.submission import submit

GRID = """sweep: notes
description: "width against lr, two seeds"
tags: [baseline, teacher]
base: {batchfn: gaussian_teacher, model: mlp, d: 4, width: 8, batch_size: 16, steps: 20, n_test: 32, eval_every: 10}
grid: {lr: [0.01, 0.1]}
"""


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    _git(folder, "init", "-q")
    _git(folder, "config", "user.email", "t@example.com")
    _git(folder, "config", "user.name", "t")
    (folder / "grid.yaml").write_text(GRID)
    _git(folder, "add", "grid.yaml")
    _git(folder, "commit", "-q", "-m", "grid")
    return folder


def test_the_git_state_of_the_grids_folder_clean_dirty_and_outside_git(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"git_commit": head, "git_dirty": False, "git_diff_sha256": None}
    (repo / "grid.yaml").write_text(GRID.replace("0.1]", "0.2]"))
    one = git_state(repo)
    assert one["git_commit"] == head and one["git_dirty"] is True and len(one["git_diff_sha256"]) == 64
    (repo / "notes.txt").write_text("untracked")
    two = git_state(repo)
    assert two["git_dirty"] and two["git_diff_sha256"] != one["git_diff_sha256"]  # an untracked file counts
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert git_state(outside) == {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    found = collect(outside)
    assert found["runner_version"] == runner.__version__ and found["host"] and found["python_version"]


def test_a_submit_records_its_notes_grid_and_provenance_and_every_view_shows_them(repo, run_cli, tmp_path):
    db = str(tmp_path / "jobs.db")
    head = _git(repo, "rev-parse", "HEAD")
    done = run_cli("submit", str(repo / "grid.yaml"), "--db", db, "steps=30")
    assert done.returncode == 0, done.stderr
    with Store(db) as store:
        [row] = store.submission_rows("notes")
        assert row["description"] == "width against lr, two seeds" and row["tags"] == ["baseline", "teacher"]
        assert row["grid"] == GRID and row["overrides"] == ["steps=30"]
        p = row["provenance"]
        assert p["git_commit"] == head and p["git_dirty"] is False
        assert p["command"].startswith("runner submit") or " submit " in p["command"]
        assert p["command"].endswith("--db '<db>' steps=30")  # (the database's own URL is never stored)
    (repo / "grid.yaml").write_text(GRID.replace("0.1]", "0.1, 0.2]"))  # a dirty tree adds one job
    assert submit(repo / "grid.yaml", db=db, overrides=["steps=30"]).added == 1
    assert runner.run(dict(sweep="plain", base=dict(batchfn="gaussian_teacher", model="mlp", d=4, batch_size=8, steps=5)),
                      db=db, devices="cpu", quiet=True) is not None
    assert run_cli("workers", "--db", db, "--devices", "cpu").returncode == 0

    frame = runner.results(db, sweep="notes").sort_values("job_id")
    assert frame["git_commit"].tolist() == [head] * 3
    assert frame["git_dirty"].tolist() == [False, False, True]  # the third job came from the dirty tree
    assert frame["torch_version"].notna().all() and frame["python_version"].notna().all()

    sweeps = run_cli("sweeps", "--db", db)
    assert sweeps.returncode == 0
    line = next(x for x in sweeps.stdout.splitlines() if x.startswith("notes"))
    assert "baseline, teacher" in line and "width against lr, two seeds" in line and "  2  " in line  # 2 submits
    assert any(x.startswith("plain") for x in sweeps.stdout.splitlines())

    status = run_cli("status", "--db", db).stdout
    assert "notes:\n  notes: width against lr, two seeds  [baseline, teacher]" in status

    shown = run_cli("show", "3", "--db", db).stdout
    assert f"git: {head} (dirty: uncommitted changes, diff sha256 " in shown
    assert "overrides: steps=30" in shown and "notes: width against lr, two seeds  [tags: baseline, teacher]" in shown

    report = run_cli("report", "--db", db, "--sweep", "notes", "-o", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "rep" / "summary.md").read_text()
    assert text.startswith("# Sweep `notes`\n\nwidth against lr, two seeds\n\nTags: `baseline`, `teacher`")
    assert "## Provenance" in text and f"`{head[:12]}` dirty (diff `" in text and "grid: {lr: [0.01, 0.1, 0.2]}" in text


@pytest.mark.parametrize("tags", ["[1, 2]", "[' ']", "{a: 1}"])
def test_bad_tags_are_refused_in_one_line_and_nothing_is_written(tmp_path, tags):
    grid = tmp_path / "g.yaml"
    grid.write_text(GRID.replace("[baseline, teacher]", tags))
    with pytest.raises(UserError, match="tags must be a list of words"):
        submit(grid, db=str(tmp_path / "jobs.db"))
    assert not (tmp_path / "jobs.db").exists()


def test_the_module_form_is_shown_as_the_command():
    from runner.provenance import command_line

    assert command_line(["/repo/runner/cli/__main__.py", "submit", "g.yaml"]) == "runner submit g.yaml"
    assert command_line(["/venv/bin/runner", "status"]) == "runner status"
    assert command_line(["notebook.py", "x"]) == "notebook.py x"


def test_a_password_in_the_command_line_is_never_stored():
    from runner.provenance import command_line

    line = command_line(["/venv/bin/runner", "submit", "g.yaml", "--db", "postgresql+psycopg://ann:S3cret@db:5432/runs",
                         "--db=postgresql://ann:p%40ss@h/r", "data_url=https://bob:pw@example.org/x"])
    assert line == "runner submit g.yaml --db '<db>' '--db=<db>' data_url=https://bob:***@example.org/x"
