"""Databases for tests: SQL run straight on a runner database, a SQLite file another program left,
and the PostgreSQL test server (skipped, with the reason, where none answers)."""
from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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


PG_SERVER = os.environ.get("RUNNER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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
