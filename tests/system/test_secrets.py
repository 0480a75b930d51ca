"""Database credentials never appear in output, logs, error messages or the database itself.

A PostgreSQL URL that cannot be used (no server, no such role or database) is refused with one
line; that line must show the URL with its password masked (***), so the user still sees which
database was meant. A full run on the PostgreSQL test server (marked `postgres`) with a password in
its URL shows the password nowhere and stores neither it nor the URL."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support.databases import need_postgres, pg_connection, pg_schema_url
from support.processes import cli_env, wait_for, worker_pids

import runner
from runner.queue.store import display_url

PASSWORD = "S3cretPassw0rd"
URL = f"postgresql+psycopg://runner:{PASSWORD}@127.0.0.1:5432/test"
MASKED = "postgresql+psycopg://runner:***@127.0.0.1:5432/test"
GRID = ("sweep: secrets\nbatchfn: gaussian_teacher\nmodel: mlp\n"
        "base: {d: 4, batch_size: 8, width: 8, steps: 20, n_test: 16, eval_every: 10}\ngrid: {seed: [0, 1]}\n")

COMMANDS = {
    "submit": ("submit", "grid.yaml"),
    "workers": ("workers", "--devices", "cpu", "-v"),
    "status": ("status",),
    "results": ("results", "--sweep", "secrets"),
    "cancel": ("cancel", "--sweep", "secrets"),
    "retry": ("retry",),
}

# URLs a user may mistype, and the parts of the password each holds: none may be shown.
ODD_URLS = {
    "raw_at_in_password": ("postgresql://runner:S3cr@tPassw0rd@127.0.0.1:5432/test", ("S3cr", "tPassw0rd")),
    "percent_encoded": ("postgresql://runner:S3cret%40Passw0rd@127.0.0.1:5432/test", ("S3cret", "Passw0rd")),
    "bad_port": (f"postgresql://runner:{PASSWORD}@127.0.0.1:port/test", (PASSWORD,)),
    "unknown_driver": (f"nosuchdb://runner:{PASSWORD}@127.0.0.1:5432/test", (PASSWORD,)),
    "unparseable": (f"://runner:{PASSWORD}@127.0.0.1", (PASSWORD,)),
    "unreachable_server": (f"postgresql+psycopg://runner:{PASSWORD}@127.0.0.1:1/test", (PASSWORD,)),
    "no_such_database": (f"postgresql+psycopg://runner:{PASSWORD}@127.0.0.1:5432/runner_no_such_db", (PASSWORD,)),
    "libpq_driver_default": (f"postgresql://runner:{PASSWORD}@127.0.0.1:1/test", (PASSWORD,)),
}


WARNING = "warning: the password in --db is visible to every user of this machine (ps)"


def _one_line(stderr: str) -> str:
    """The one error line (after the warning a password typed into --db gets)."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(WARNING)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("how", ["--db", "RUNNER_DB"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_masks_the_password_of_a_database_url(run_cli, tmp_path, command, how):
    (tmp_path / "grid.yaml").write_text(GRID)
    args, env = COMMANDS[command], {}
    if how == "--db":
        args = (*args, "--db", URL)
    else:
        env = {"RUNNER_DB": URL}
    out = run_cli(*args, env=env)
    assert PASSWORD not in out.stdout and PASSWORD not in out.stderr
    assert out.returncode == 2, out.stderr
    assert (WARNING in out.stderr) == (how == "--db"), out.stderr  # RUNNER_DB keeps it out of `ps`
    line = _one_line(out.stderr)
    assert MASKED in line  # the user sees which database was meant, without its password
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]  # nothing created


@pytest.mark.parametrize("name", list(ODD_URLS))
def test_a_mistyped_url_shows_no_part_of_its_password(run_cli, tmp_path, name):
    url, secrets = ODD_URLS[name]
    shown = display_url(url)
    assert "***" in shown
    out = run_cli("status", "--db", url)
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert "***" in line
    for secret in secrets:
        assert secret not in shown and secret not in out.stdout + out.stderr, (secret, line)


def test_display_url_keeps_what_has_no_password():
    assert display_url("postgresql://runner@127.0.0.1:5432/test") == "postgresql://runner@127.0.0.1:5432/test"
    assert display_url(URL) == MASKED
    assert display_url(f"postgresql+psycopg://runner:{PASSWORD}@db.example.org/runs?options=-csearch_path%3Dme") == \
        "postgresql+psycopg://runner:***@db.example.org/runs?options=-csearch_path%3Dme"
    assert display_url(f"postgresql+psycopg://runner:{PASSWORD}@/runs?host=/var/run/postgresql") == \
        "postgresql+psycopg://runner:***@/runs?host=%2Fvar%2Frun%2Fpostgresql"
    assert display_url("/data/a:b@c.db") == "sqlite:////data/a%3Ab%40c.db"  # a file path is never masked
    assert display_url("sqlite:////data/jobs.db") == "sqlite:////data/jobs.db"


def test_a_full_run_stores_no_url_and_no_secret_from_the_environment(run_cli, tmp_path):
    db = tmp_path / "jobs.db"
    env = {"RUNNER_DB": f"sqlite:///{db}", "DATABASE_URL": URL, "PGPASSWORD": PASSWORD}
    (tmp_path / "grid.yaml").write_text(GRID)
    outputs = []
    for args in (("submit", "grid.yaml"), ("workers", "--devices", "cpu", "--per-device", "2", "-v"), ("status",),
                 ("results", "--sweep", "secrets")):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, (args, out.stderr)
        outputs.append(out.stdout + out.stderr)
    assert all(PASSWORD not in text for text in outputs)

    con = sqlite3.connect(db)
    statuses = [row[0] for row in con.execute("SELECT status FROM jobs")]
    workers = con.execute("SELECT COUNT(*) FROM workers").fetchone()[0]
    con.close()
    assert statuses == ["done", "done"] and workers >= 1  # the run wrote jobs, results and the worker registry
    data = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    for needle in (b"sqlite:", str(db).encode(), PASSWORD.encode(), b"postgresql"):
        assert needle not in data, needle


@pytest.mark.postgres
def test_a_full_postgresql_run_shows_and_stores_no_password(run_cli, tmp_path, pg_url):
    need_postgres()
    schema = pg_url.split("search_path%3D")[-1]
    url = pg_schema_url(schema).replace("postgres@", f"postgres:{PASSWORD}@", 1)  # trust auth: never asked for
    assert PASSWORD in url and display_url(url) == url.replace(PASSWORD, "***")
    (tmp_path / "grid.yaml").write_text(GRID)
    outputs = []
    for args, env in ((("submit", "grid.yaml", "--db", url), {}),
                      (("workers", "--devices", "cpu", "--per-device", "2", "-v", "--checkpoint-dir", "ckpt"),
                       {"RUNNER_DB": url}),
                      (("status",), {"RUNNER_DB": url}), (("results", "--sweep", "secrets", "--db", url), {}),
                      (("db", "upgrade", "--db", url), {})):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, (args, out.stderr)
        outputs.append(out.stdout + out.stderr)
    assert all(PASSWORD not in text for text in outputs)
    assert "***" in outputs[0]  # submit names the database, masked
    with pg_connection(url) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        dump = "\n".join(str(row) for table in tables for row in con.execute(f"SELECT * FROM {table}"))
        statuses = [r[0] for r in con.execute("SELECT status FROM jobs")]
    assert statuses == ["done", "done"] and "cpu" in dump  # the run wrote jobs, results and the worker registry
    for needle in (PASSWORD, "postgresql:", "postgresql+", "127.0.0.1", schema):  # (the submit's folder, stored
        assert needle not in dump, needle                                          # with it, is this test's name)


@pytest.mark.postgres
def test_no_process_of_a_pool_carries_the_password_in_its_arguments(tmp_path, pg_url):
    """ps shows every user each process's arguments: the supervisor's hold the URL only when it was typed
    into --db (which warns), and the spawned workers' never (they get their settings through a pipe)."""
    need_postgres()
    schema = pg_url.split("search_path%3D")[-1]
    url = pg_schema_url(schema).replace("postgres@", f"postgres:{PASSWORD}@", 1)
    runner.submit(dict(sweep="ps", batchfn="plugins_for_tests:slow_teacher", model="mlp",
                       base=dict(d=3, batch_size=8, steps=400, delay=0.01, n_test=0), grid=dict(seed=[0, 1, 2, 3])),
                  db=url)
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--per-device", "2",
                             "--quiet"], env=cli_env({"RUNNER_DB": url}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pids = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(worker_pids(proc.pid)), timeout=120)
        for pid in [proc.pid, *pids]:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert PASSWORD not in args and "postgresql" not in args, (pid, args)
    finally:
        proc.terminate()
        proc.communicate(timeout=120)
