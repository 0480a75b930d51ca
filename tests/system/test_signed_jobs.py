"""Signed jobs for shared queues (issue 16 item 3), through the real CLI on SQLite and PostgreSQL: with
a signing key, submit signs each job's config and workers holding the key refuse a row written
without it (missing or wrong signature, or a signed config changed) before importing anything it
names. The key is never stored in the database or printed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.databases import sql

import runner
from runner.hashing import config_hash
from runner.signing import sign_config

KEY = "0123456789abcdef-test-signing-key"
OTHER_KEY = b"another-key-of-at-least-16-bytes"
GRID = ("sweep: signed\nbatchfn: gaussian_teacher\nmodel: mlp\n"
        "base: {d: 4, k: 2, batch_size: 8, width: 8, steps: 20, n_test: 16}\ngrid: {seed: [0, 1]}\n")
# A user's module as an attacker would name it: importing it is the attack (it leaves a marker behind).
EVIL = '''import pathlib
import torch
pathlib.Path("imported.txt").write_text("the worker imported a module a forged row named")


class Net(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.lin(x)
'''
FORGED_CONFIG = dict(batchfn="gaussian_teacher", model="evil_model:Net", d=4, k=2, batch_size=8, steps=20, n_test=16)


def _key_file(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "runner.key"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return {"RUNNER_SIGNING_KEY_FILE": str(path)}


def _insert(url: str, sweep: str, config: dict, signature: str | None) -> None:
    """A row written straight into the jobs table, as anyone with INSERT on a shared queue can."""
    sql(url, "INSERT INTO jobs (sweep, config_hash, config, status, priority, attempts, max_attempts, token, "
             "created_at, signature) VALUES (:sweep, :h, :config, 'pending', 0, 0, 3, 0, 0, :sig)",
        {"sweep": sweep, "h": config_hash(config), "config": json.dumps(config), "sig": signature})


def test_workers_with_the_key_run_signed_jobs_and_refuse_rows_written_without_it(url, run_cli, tmp_path, show):
    (tmp_path / "evil_model.py").write_text(EVIL)
    (tmp_path / "grid.yaml").write_text(GRID)
    env = _key_file(tmp_path)
    submitted = run_cli("submit", "grid.yaml", "--db", url, env=env)
    assert submitted.returncode == 0, submitted.stderr
    assert "2 added" in submitted.stdout and "signed with the key of RUNNER_SIGNING_KEY_FILE" in submitted.stdout
    genuine = sql(url, "SELECT config, signature FROM jobs ORDER BY id")
    assert all(sig and sig.startswith("hmac-sha256:") for _, sig in genuine)

    changed = dict(json.loads(genuine[0][0]), lr=0.5)  # a signed job's config edited, its signature kept
    _insert(url, "forged", FORGED_CONFIG, None)                                  # unsigned
    _insert(url, "forged", dict(FORGED_CONFIG, seed=1), sign_config(OTHER_KEY, FORGED_CONFIG))  # another key
    _insert(url, "forged", changed, genuine[0][1])
    out = run_cli("workers", "--devices", "cpu", "--db", url, "--quiet", env=env)
    assert out.returncode == 1, out.stderr  # failed jobs: exit 1
    assert "verifying job signatures with the key of RUNNER_SIGNING_KEY_FILE" in out.stderr
    assert not (tmp_path / "imported.txt").exists()  # nothing a forged row names was imported

    rows = sql(url, "SELECT sweep, status, attempts, error FROM jobs ORDER BY id")
    assert [r[:3] for r in rows] == [("signed", "done", 1)] * 2 + [("forged", "failed", 1)] * 3  # failed at once
    errors = [r[3] for r in rows[2:]]
    assert "the job is not signed" in errors[0]
    assert "signature does not match its config" in errors[1] and "signature does not match" in errors[2]
    assert all("submit it" in e and len(e.splitlines()) == 1 for e in errors)
    assert "priority 0  signed" in run_cli("show", "1", "--db", url).stdout.splitlines()[0]
    assert not run_cli("show", "3", "--db", url).stdout.splitlines()[0].endswith("signed")

    everything = "\n".join(str(r) for table in ("jobs", "results", "attempts", "workers", "meta", "sweeps")
                           for r in sql(url, f"SELECT * FROM {table}"))
    assert KEY not in everything and KEY not in submitted.stdout + submitted.stderr + out.stdout + out.stderr

    # The same forged row is what a worker without the key runs: the refusal above is the key's doing.
    assert run_cli("retry", "--sweep", "forged", "--db", url).returncode == 0
    unkeyed = run_cli("workers", "--devices", "cpu", "--db", url, "--quiet")
    assert (tmp_path / "imported.txt").exists(), unkeyed.stderr
    show(f"\nsigned queue ({url.split(':')[0] if '://' in url else 'sqlite'}): 2 signed jobs done; unsigned, "
         "wrongly signed and altered rows failed unrun; without the key the forged row ran")


def test_workers_without_signing_run_unsigned_jobs_as_before(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    (tmp_path / "grid.yaml").write_text(GRID)
    submitted = run_cli("submit", "grid.yaml", "--db", db)
    assert submitted.returncode == 0 and "signed with" not in submitted.stdout
    assert sql(db, "SELECT signature FROM jobs") == [(None,), (None,)]
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert out.returncode == 0 and "verifying" not in out.stderr
    assert (runner.results(db, "signed").status == "done").all()


@pytest.mark.parametrize("setting, message", [
    ({"RUNNER_SIGNING_KEY": "short"}, "signing key of 5 bytes; use at least 16 random bytes"),
    ({"RUNNER_SIGNING_KEY_FILE": "{tmp}/missing.key"}, "cannot read the key file"),
    ({"RUNNER_SIGNING_KEY_FILE": "{tmp}/open.key"}, "can be read or written by other users: chmod 600"),
    ({"RUNNER_SIGNING_KEY_FILE": "{tmp}"}, "is not a regular file"),
    ({"RUNNER_SIGNING_KEY": KEY, "RUNNER_SIGNING_KEY_FILE": "{tmp}/open.key"}, "unset one of them"),
], ids=["short", "missing-file", "file-others-can-read", "folder", "both"])
@pytest.mark.parametrize("command", ["submit", "workers"])
def test_a_bad_key_setting_is_one_line_exit_2_and_nothing_written(tmp_path, run_cli, setting, message, command):
    (tmp_path / "grid.yaml").write_text(GRID)
    (tmp_path / "open.key").write_text(KEY)
    os.chmod(tmp_path / "open.key", 0o644)
    db = tmp_path / "jobs.db"
    if command == "workers":
        assert run_cli("submit", "grid.yaml", "--db", str(db)).returncode == 0
    before = db.read_bytes() if db.exists() else None
    env = {k: v.format(tmp=tmp_path) for k, v in setting.items()}
    args = ("submit", "grid.yaml") if command == "submit" else ("workers", "--devices", "cpu", "--quiet")
    out = run_cli(*args, "--db", str(db), env=env)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert (db.read_bytes() if db.exists() else None) == before
    assert KEY not in out.stderr
