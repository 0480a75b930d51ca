"""The engine: database URLs, opening SQLite and PostgreSQL, the statement compiler, and the one
transaction helper (retry while busy or out of reach, driver errors mapped to runner's errors)."""
from __future__ import annotations

import functools
import os
import random
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import create_engine, event, extract, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Dialect, make_url

from ...errors import RunnerError, StoreError, UserError
from .one_machine import network_filesystem
from .schema import APP, _ensure_schema, _inspect_sqlite_file, _needs_schema, _read_meta, _tables

if TYPE_CHECKING:
    from typing import Self

BUSY_TIMEOUT_S = 60.0    # SQLite's busy timeout; PostgreSQL's lock_timeout; how long a lost server is retried
BUSY_RETRIES = 12        # immediate "database is locked" errors are retried this often, with jittered backoff
PG_RETRY = frozenset({"40001", "40P01", "55P03"})  # serialization failure, deadlock, lock timeout: run it again
CONNECT_TIMEOUT_S = 10   # PostgreSQL: an unreachable server is reported after this long
CHUNK = 10_000           # ids per IN (...) list (SQLite allows 32,766 variables)
T = TypeVar("T")


def _chunks(ids: Sequence[int] | None) -> list[list[int] | None]:
    if ids is None:
        return [None]
    ordered = sorted({int(i) for i in ids})
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


# --- execution: Core statements compiled once, run on the pooled DBAPI connection --------------------
@dataclass(frozen=True)
class _Sql:
    text: str
    names: tuple[str, ...]      # bound names in positional order
    fixed: dict[str, Any]       # values compiled into the statement (constants)

    def args(self, params: dict[str, Any]) -> tuple:
        return tuple(self.fixed[n] if n in self.fixed else params[n] for n in self.names)


@functools.lru_cache(maxsize=512)  # named statements stay hot; one-off statements are compiled each time
def _compile(stmt: Any, dialect: Dialect, keys: tuple[str, ...] | None) -> _Sql:
    compiled = stmt.compile(dialect=dialect, column_keys=keys)
    if compiled.post_compile_params:  # IN (list of values): only in one-off statements, which bind no names
        compiled = stmt.compile(dialect=dialect, column_keys=keys, compile_kwargs={"render_postcompile": True})
    required = {n for n, b in compiled.binds.items() if b.required}
    fixed = {n: v for n, v in compiled.params.items() if n not in required}
    return _Sql(str(compiled), tuple(compiled.positiontup or ()), fixed)


class _Tx:
    """One open transaction; neither sqlite3 nor psycopg needs type conversion for our columns, so
    values pass as is (positional parameters on both: qmark for sqlite3, format for psycopg)."""

    def __init__(self, dbapi: Any, dialect: Dialect) -> None:
        self.dbapi, self.dialect = dbapi, dialect

    def run(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        sql = _compile(stmt, self.dialect, None)
        return self.dbapi.execute(sql.text, sql.args(params or {}))

    def many(self, stmt: Any, keys: tuple[str, ...], rows: Iterable[tuple]) -> int:
        """executemany of an INSERT of these columns, rows given as tuples in the same order (on a
        cursor: psycopg's connection has no executemany of its own)."""
        sql = _compile(stmt, self.dialect, keys)
        assert sql.names == keys and not sql.fixed, sql.text
        cursor = self.dbapi.cursor()
        cursor.executemany(sql.text, rows)
        return cursor.rowcount

    def one(self, stmt: Any, params: dict[str, Any] | None = None) -> tuple | None:
        rows = self.run(stmt, params).fetchall()  # fetch all: no statement stays in progress
        return rows[0] if rows else None

    def all(self, stmt: Any, params: dict[str, Any] | None = None) -> list[tuple]:
        return self.run(stmt, params).fetchall()

    def dicts(self, stmt: Any) -> list[dict[str, Any]]:
        cursor = self.run(stmt)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def ddl(self, text: str) -> None:
        self.dbapi.execute(text)

    def now(self) -> float:
        """The database's clock, in seconds since the epoch: every lease, expiry and timestamp the queue
        writes is taken from it, so hosts whose clocks disagree still agree on when a lease runs out."""
        return float(self.one(_NOW[self.dialect.name])[0])  # type: ignore[index]


# PostgreSQL: the server's wall clock now (not the transaction's start); SQLite: the clock of the one host
# (the SQLite library's, in milliseconds), read the same way, so one code path serves both.
_NOW = {"postgresql": select(extract("epoch", func.clock_timestamp())),
        "sqlite": select((func.julianday("now") - 2440587.5) * 86400.0)}


# --- URLs ----------------------------------------------------------------------------------------
def sqlalchemy_url(db: str) -> str:
    """A file path becomes an absolute sqlite:/// URL; anything containing "://" is a URL already."""
    if "://" in db:
        return db
    return URL.create("sqlite", database=os.path.abspath(os.path.expanduser(db))).render_as_string(hide_password=False)


def sqlite_file(db: str) -> str | None:
    """The file of a SQLite database named by a path or a sqlite URL, as written; None for a server
    database or an in-memory one (what has no folder of its own)."""
    if "://" not in db:
        return db
    url = make_url(db)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return url.database


_USER_PASSWORD = re.compile(r"(://[^:/@]*:)(.*)@")  # greedy: a password holding a raw '@' runs to the last '@'


def display_url(db: str) -> str:
    """The URL with any password replaced by ***: the only form of a URL that messages show."""
    raw = _USER_PASSWORD.search(db) if "://" in db else None
    try:
        url = make_url(sqlalchemy_url(db))
        if raw is None or url.password == urllib.parse.unquote(raw.group(2)):
            return url.render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        pass
    # unparseable, or parsed with a different password (a raw '@' in it): mask all of user:...@
    return _USER_PASSWORD.sub(r"\1***@", db, count=1)


def _scrub(text: str, db: str) -> str:
    """text (a driver's message, say) with the password of URL db replaced by ***."""
    raw = _USER_PASSWORD.search(db) if "://" in db else None
    found = raw.group(2) if raw else ""
    secrets = {found, urllib.parse.unquote(found), *found.split("@")} - {""}  # a raw '@' may split it when parsed
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# --- connections -----------------------------------------------------------------------------------
def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN: Database._transact issues its own
    for pragma in (f"busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}", "journal_mode = WAL", "synchronous = NORMAL",
                   "foreign_keys = ON"):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _on_connect_pg(dbapi_connection: Any, durable: bool) -> None:
    """A new psycopg connection: NUMERIC (sum, avg) comes back as int or float, as from SQLite; a
    lock waited on for BUSY_TIMEOUT_S is an error (retried, then reported), as SQLite's busy timeout.
    Commits do not wait for the WAL flush (synchronous_commit off: SQLite's synchronous=NORMAL; a
    server crash may drop the last commits, never half of one; fencing makes a lost claim or finish
    a rerun) unless durable (the URL sets synchronous_commit in its options)."""
    dbapi_connection.adapters.register_loader("numeric", _numeric_loader())
    dbapi_connection.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    if not durable:
        dbapi_connection.execute("SET synchronous_commit = off")
    dbapi_connection.commit()


@functools.cache
def _numeric_loader() -> type:
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data)
            return int(text) if text.lstrip(b"-").isdigit() else float(text)
    return NumericLoader


def _is_busy(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (sqlite3.OperationalError, sa_exc.OperationalError)) and ("locked" in text or "busy" in text)


def _pg_retry(exc: Exception) -> str | None:
    """'busy' for an error worth running the transaction again (serialization failure, deadlock,
    lock timeout), 'lost' for a lost or refused connection, else None."""
    import psycopg

    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None)
    if state in PG_RETRY:
        return "busy"
    lost = state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")  # 57P0x: shutdowns
    return "lost" if lost and isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError)) else None


# --- the database handle ---------------------------------------------------------------------------
class Database:
    """An open database with runner's schema, and the one way to run a transaction on it
    (`_write`, `_read`). Thread-safe: each call takes its own pooled connection. Never pickled."""

    def __init__(self, db: str, *, create: bool = False, upgrade: bool = False, autocheckpoint: bool = True) -> None:
        self.url, self.shown = sqlalchemy_url(db), display_url(db)
        self.upgrade, self.upgraded_from, self._opened, self.autocheckpoint = upgrade, None, False, autocheckpoint
        try:
            url = make_url(self.url)
            url.get_dialect()
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
            reason = _scrub(str(exc).splitlines()[0], db)
            raise UserError(f"cannot use the database URL {self.shown}: {reason} (pass a file path, or a URL like "
                            "sqlite:///path/jobs.db or postgresql+psycopg://user@host/dbname)") from None
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            needs_schema = self._open_sqlite(url, create)
        elif url.get_backend_name() == "postgresql":
            needs_schema = self._open_postgresql(url, create)
        else:
            raise UserError(f"cannot use {self.shown}: runner keeps jobs in SQLite (pass a file path with --db) "
                            "or PostgreSQL (a postgresql+psycopg://user@host/dbname URL)")
        self._opened = True
        if needs_schema:
            try:
                self._write(self._ensure_schema)
            except BaseException:
                self.close()
                raise

    def _open_sqlite(self, url: URL, create: bool) -> bool:
        if url.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise UserError(f"cannot use {self.shown}: runner opens SQLite files with Python's sqlite3; "
                            "pass a file path with --db")
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            raise UserError(f"cannot use {self.shown}: worker processes cannot share an in-memory database; "
                            "pass a file path with --db")
        self.path = self.where = os.path.abspath(url.database)
        network = network_filesystem(self.path)
        if network is not None:
            raise UserError(f"{self.path} is on a network filesystem ({network}), where SQLite's locks and write-ahead "
                            "log do not hold: put the database on a local disk (e.g. --db /tmp/jobs.db), or use a "
                            "PostgreSQL URL (postgresql+psycopg://user@host/dbname) for workers on several machines")
        needs_schema = _inspect_sqlite_file(self.path, create, self.upgrade, BUSY_TIMEOUT_S)
        self._engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
                                     pool_size=4, max_overflow=8)
        event.listen(self._engine, "connect", _on_connect)
        if not self.autocheckpoint:
            event.listen(self._engine, "connect", lambda dbapi_con, _record: dbapi_con.execute("PRAGMA wal_autocheckpoint = 0"))
        self._begin = ("BEGIN", "BEGIN IMMEDIATE")
        self._errors: tuple[type[BaseException], ...] = (sqlite3.Error, sa_exc.DBAPIError)
        return needs_schema

    def _open_postgresql(self, url: URL, create: bool) -> bool:
        """Connect and look, before anything is written (psycopg 3; READ COMMITTED transactions)."""
        if url.drivername == "postgresql":  # SQLAlchemy's default driver would be psycopg2
            url = url.set(drivername="postgresql+psycopg")
        if url.drivername != "postgresql+psycopg":
            raise UserError(f"cannot use {self.shown}: runner talks to PostgreSQL through psycopg 3; "
                            "write the URL as postgresql+psycopg://user@host/dbname")
        try:
            import psycopg
        except ImportError:
            raise UserError(f"cannot use {self.shown}: PostgreSQL needs psycopg 3: "
                            "pip install 'psycopg[binary]' (runner's postgres extra)") from None
        self.path, self.where = None, self.shown
        defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APP}  # unless the URL sets them
        connect_args = {k: v for k, v in defaults.items() if k not in url.query}
        self._engine = create_engine(url, paramstyle="format", pool_size=4, max_overflow=8, connect_args=connect_args)
        durable = "synchronous_commit" in str(url.query.get("options", ""))
        event.listen(self._engine, "connect", lambda dbapi_con, _record: _on_connect_pg(dbapi_con, durable))
        self._begin = (None, None)  # psycopg begins a transaction at the first statement
        self._errors = (psycopg.Error, sa_exc.DBAPIError)
        try:
            return self._read(lambda tx: _needs_schema(
                _tables(tx, self.shown), lambda: _read_meta(tx), self.where, create, self.upgrade))
        except BaseException:
            self.close()
            raise

    def _ensure_schema(self, tx: _Tx) -> None:
        """Create or migrate the schema (see schema._ensure_schema); remember the version migrated from."""
        version = _ensure_schema(tx, self.where, self.upgrade)
        if version is not None:
            self.upgraded_from = version

    def checkpoint_wal(self) -> None:
        """SQLite: copy what the write-ahead log holds back into the database file without waiting
        for anyone (PASSIVE), as SQLite's automatic checkpoint would inside some unlucky commit."""
        if not self.sqlite:
            return
        try:
            with self._engine.connect() as con:
                con.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except self._errors:  # busy, or a transient error: best effort, the next call catches up
            pass

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a Store cannot be pickled: pass the database URL and open a Store in the child")

    # --- transactions ----------------------------------------------------------------------------
    def _transact(self, body: Callable[[_Tx], T], write: bool) -> T:
        """Run body in one transaction (SQLite: BEGIN IMMEDIATE when it writes; PostgreSQL: READ
        COMMITTED); run it again while the database is busy (SQLite: locked; PostgreSQL: a
        serialization failure, deadlock or lock timeout) or, once opened, while a PostgreSQL server
        is out of reach; then give up with a UserError. Nothing stays open after the call."""
        started, begin = time.monotonic(), self._begin[write]
        attempt = 0
        while True:
            attempt += 1
            try:
                pooled = self._engine.raw_connection()
                try:
                    dbapi = pooled.driver_connection
                    if begin is not None:
                        dbapi.execute(begin)
                    try:
                        result = body(_Tx(dbapi, self._engine.dialect))
                        dbapi.commit()
                        return result
                    except BaseException:
                        if self.sqlite:
                            dbapi.rollback()
                        else:
                            self._pg_rollback(pooled, dbapi)
                        raise
                finally:
                    pooled.close()
            except self._errors as exc:
                kind = ("busy" if _is_busy(exc) else None) if self.sqlite else _pg_retry(exc)
                if kind is None or (kind == "lost" and not self._opened):
                    raise self._error(exc) from exc
                waited = time.monotonic() - started
                if waited >= BUSY_TIMEOUT_S or (kind == "busy" and attempt >= BUSY_RETRIES):
                    if kind == "lost":
                        raise UserError(f"lost the connection to {self.shown} and could not reconnect for "
                                        f"{waited:.0f} s ({self._text(exc)}): check that the server is up") from exc
                    raise UserError(f"{self.shown} stayed locked for {waited:.0f} s (by another program?): "
                                    "close it and try again") from exc
                time.sleep(min(0.01 * 2 ** min(attempt, 10), 1.0) * random.uniform(0.5, 1.5))

    @staticmethod
    def _pg_rollback(pooled: Any, dbapi: Any) -> None:
        """Roll back, or drop the connection from the pool when it is broken (the server rolled back)."""
        if dbapi.closed or dbapi.broken:
            pooled.invalidate()
            return
        import psycopg

        try:
            dbapi.rollback()
        except psycopg.Error:
            pooled.invalidate()

    def _write(self, body: Callable[[_Tx], T]) -> T:
        return self._transact(body, write=True)

    def _read(self, body: Callable[[_Tx], T]) -> T:
        return self._transact(body, write=False)

    def _text(self, exc: Exception) -> str:
        """The first line of a driver's message, with any password of the URL masked."""
        return _scrub((str(getattr(exc, "orig", exc)) or type(exc).__name__).splitlines()[0].strip(), self.url)

    def _error(self, exc: Exception) -> RunnerError:
        text = self._text(exc)
        if any(s in text.lower() for s in ("readonly", "read-only", "disk is full", "unable to open", "disk i/o")):
            return UserError(f"{self.shown}: {text}: check the file, its folder's permissions and free disk space")
        if not self.sqlite:
            state = getattr(getattr(exc, "orig", exc), "sqlstate", None)
            if not self._opened:  # connecting or looking at the database: the user's to fix
                return UserError(f"cannot open the database {self.shown}: {text}: check that the server runs and "
                                 "the URL's host, port, user and database (or pass a SQLite file with --db)")
            if state == "42501":
                return UserError(f"{self.shown}: {text}: grant the database user the rights on runner's tables")
        return StoreError(f"{self.shown}: {text}")
