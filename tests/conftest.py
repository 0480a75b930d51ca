"""Shared fixtures: run the real CLI in a subprocess, in a temporary working folder; fresh
databases on the PostgreSQL test server (each test gets its own schema, dropped afterwards).

The suite's layout: unit/ mirrors runner's modules (unit/queue, unit/train, unit/pool,
unit/results, and the base modules and built-in plug-ins at its top); system/ drives real
processes (the CLI, workers, hosts, chaos), GPUs and the notebook. Helpers live in the support/
package; plugins_for_tests.py and grab_plugins.py stand in for a user's own modules, which jobs
name by import path ('plugins_for_tests:linear_teacher'), so they sit on PYTHONPATH as a user's would.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.databases import need_postgres, pg_connection, pg_schema_url
from support.processes import cli_env


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run `runner ARGS...` in tmp_path; returns the CompletedProcess (text)."""

    def run(*args: str, timeout: float = 240, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd or tmp_path, env=cli_env(env),
                              capture_output=True, text=True, timeout=timeout)

    return run


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


# --- PostgreSQL: the server of the `postgres` tests ------------------------------------------------
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


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


