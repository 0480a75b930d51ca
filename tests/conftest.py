"""Shared fixtures: run the real CLI in a subprocess, in a temporary working folder; fresh
databases on the PostgreSQL test server (each test gets its own schema, dropped afterwards)."""
from __future__ import annotations

import contextlib
import functools
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


# --- PostgreSQL: the server of the `postgres` tests ------------------------------------------------
PG_SERVER = os.environ.get("RUNNER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _pg_connect_args(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    args = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database,
            **u.query}
    return {k: v for k, v in args.items() if v is not None}


@contextlib.contextmanager
def pg_connection(url: str = PG_SERVER, **kwargs: Any) -> Iterator[Any]:
    """A psycopg connection in autocommit mode (the URL's options, search_path say, apply)."""
    import psycopg

    con = psycopg.connect(**_pg_connect_args(url), autocommit=True, connect_timeout=5, **kwargs)
    try:
        yield con
    finally:
        con.close()


@functools.cache
def postgres_problem() -> str | None:
    """None when the PostgreSQL test server answers, else why not (one line)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"psycopg is not installed ({exc}): pip install -e '.[postgres]'"
    try:
        with pg_connection() as con:
            con.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return str(exc).strip().splitlines()[0]
    return None


def need_postgres() -> None:
    from sqlalchemy.engine import make_url

    problem = postgres_problem()
    if problem is not None:
        u = make_url(PG_SERVER)
        pytest.skip(f"no PostgreSQL server at {u.host}:{u.port}: {problem}")


def pg_schema_url(schema: str) -> str:
    """The test server's URL with its search_path set to one schema: a database of its own."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_SERVER).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def new_pg_url() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases (schemas runner_test_<random>), dropped at the end."""
    need_postgres()
    made: list[str] = []

    def new() -> str:
        name = f"runner_test_{secrets.token_hex(6)}"
        with pg_connection() as con:
            con.execute(f'CREATE SCHEMA "{name}"')
        made.append(name)
        return pg_schema_url(name)

    yield new
    with pg_connection() as con:
        con.execute("SET lock_timeout = '30s'")
        for name in made:
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_url(new_pg_url: Callable[[], str]) -> str:
    return new_pg_url()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of fresh, empty databases of the backend under test (SQLite files or PostgreSQL schemas)."""
    if backend == "postgresql":
        return request.getfixturevalue("new_pg_url")
    count = iter(range(1_000_000))
    return lambda: str(tmp_path / f"jobs{next(count) or ''}.db")


@pytest.fixture
def url(new_url: Callable[[], str]) -> str:
    """One fresh, empty database of the backend under test."""
    return new_url()


def sql(url: str, statement: str, params: dict | None = None) -> list[tuple]:
    """Run one SQL statement on a runner database (a file path or a URL) and commit; its rows."""
    import sqlalchemy

    from runner.queue.store import sqlalchemy_url

    target = sqlalchemy.engine.make_url(sqlalchemy_url(url))
    if target.drivername == "postgresql":
        target = target.set(drivername="postgresql+psycopg")
    engine = sqlalchemy.create_engine(target, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as con:
            result = con.execute(sqlalchemy.text(statement), params or {})
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()
