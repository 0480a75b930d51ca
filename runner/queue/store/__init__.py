"""The job queue and everything it stores: the only module that holds SQL (SQLAlchemy 2 Core).

Jobs move through one table of allowed transitions (TRANSITIONS); every move is one guarded
UPDATE (`... WHERE status IN (allowed sources)`) whose row count is checked. Workers claim a job
atomically, renew its lease with heartbeats and write back with their fencing token; a stale token
is refused. SQLite is the embedded backend: WAL, a long busy timeout, `BEGIN IMMEDIATE` for every
write transaction, and a bounded retry for the rare immediate "database is locked". PostgreSQL
(psycopg 3) is the backend for several hosts: the same schema and statements, READ COMMITTED
transactions, `FOR UPDATE SKIP LOCKED` where a claim or a reap picks rows, and the same bounded
retry for serialization failures, deadlocks, lock timeouts and a lost connection.

Statements are Core constructs, compiled once per dialect and run on the pooled DBAPI connection
(the claim/finish path is a handful of statements with no per-call SQLAlchemy overhead).
The schema carries a version (table meta); MIGRATIONS take an older database forward
(`runner db upgrade`), and a database of a newer runner is refused.
"""
from __future__ import annotations

import enum
import functools
import json
import os
import random
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from ... import __version__
from ...errors import RunnerError, StaleTokenError, StoreError, TransitionError, UserError

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "ClaimedJob",
    "JobOutcome",
    "JobStatus",
    "StaleTokenError",
    "Store",
    "StoreError",
    "TransitionError",
    "display_url",
    "sqlalchemy_url",
]

SCHEMA_VERSION = 2       # 1: the first schema; 2: workers.version
APP = "runner"
BUSY_TIMEOUT_S = 60.0    # SQLite's busy timeout; PostgreSQL's lock_timeout; how long a lost server is retried
BUSY_RETRIES = 12        # immediate "database is locked" errors are retried this often, with jittered backoff
PG_RETRY = frozenset({"40001", "40P01", "55P03"})  # serialization failure, deadlock, lock timeout: run it again
CONNECT_TIMEOUT_S = 10   # PostgreSQL: an unreachable server is reported after this long
REAP_EVERY_S = 1.0       # PostgreSQL: a claim looks for expired leases at most this often per process
CHUNK = 10_000           # ids per IN (...) list (SQLite allows 32,766 variables)
T = TypeVar("T")


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.DIVERGED, S.PENDING, S.CANCELLED}),
    S.FAILED: frozenset({S.PENDING}),
    S.DIVERGED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
    S.DONE: frozenset(),
}
SOURCES = {t: frozenset(s for s, targets in TRANSITIONS.items() if t in targets) for t in JobStatus}


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    sweep: str
    config: dict
    token: int
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class JobOutcome:
    """What a worker writes back at the end of a job (status DONE, FAILED or DIVERGED)."""
    status: JobStatus
    summary: dict[str, Any]
    metrics: Sequence[tuple[int, str, float]] = ()   # (step, name, value); the last of duplicates wins
    arrays: Sequence[tuple[str, int, bytes]] = ()    # (name, step, npy bytes)
    error: str | None = None                         # traceback (FAILED) or reason (DIVERGED)


# --- schema ----------------------------------------------------------------------------------------
metadata = MetaData()
meta_t = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", String, nullable=False))
jobs_t = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True),  # rowid: jobs are never deleted, so ids are never reused
    Column("sweep", String, nullable=False), Column("config_hash", String, nullable=False),
    Column("config", Text, nullable=False), Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False), Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False), Column("token", Integer, nullable=False),
    Column("worker", String), Column("host", String), Column("device", String), Column("lease_until", Float),
    Column("created_at", Float, nullable=False), Column("started_at", Float), Column("finished_at", Float),
    Column("error", Text),
    UniqueConstraint("sweep", "config_hash"),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in JobStatus)})", name="ck_jobs_status"),
)
Index("ix_jobs_claim", jobs_t.c.status, jobs_t.c.priority.desc(), jobs_t.c.id)
Index("ix_jobs_sweep", jobs_t.c.sweep, jobs_t.c.status, jobs_t.c.priority.desc(), jobs_t.c.id)
results_t = Table("results", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                  Column("summary", Text, nullable=False))
metrics_t = Table("metrics", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                  Column("name", String, primary_key=True), Column("step", Integer, primary_key=True),
                  Column("value", Float),  # NULL is NaN: SQLite stores a NaN as NULL
                  sqlite_with_rowid=False)
arrays_t = Table("arrays", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                 Column("name", String, primary_key=True), Column("step", Integer, primary_key=True),
                 Column("data", LargeBinary, nullable=False))
attempts_t = Table("attempts", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                   Column("token", Integer, primary_key=True), Column("worker", String), Column("host", String),
                   Column("device", String), Column("started_at", Float), Column("ended_at", Float),
                   Column("outcome", String), Column("error", Text))
workers_t = Table("workers", metadata, Column("worker", String, primary_key=True), Column("host", String),
                  Column("pid", Integer), Column("device", String), Column("started_at", Float),
                  Column("seen_at", Float), Column("job_id", Integer), Column("exited_at", Float),
                  Column("version", String))  # schema 2: the runner version a worker runs (hosts may differ)


def _p(**params: Any) -> dict[str, Any]:
    """Values for bindparam("p_<name>"): the prefix keeps them apart from column names."""
    return {f"p_{k}": v for k, v in params.items()}


# --- state moves: the one place a job's status changes ---------------------------------------------
def _status_in(statuses: Iterable[JobStatus]) -> Any:
    """status = a OR status = b ...: no expanding IN, so the statement compiles once with its constants."""
    return or_(*(jobs_t.c.status == value for value in sorted(JobStatus(s).value for s in statuses)))


def _guarded(target: JobStatus, *where: Any, sources: Iterable[JobStatus] | None = None) -> Any:
    """UPDATE jobs SET status = target WHERE status IN (sources) AND where...; every source must be
    allowed to move to target by TRANSITIONS (default: all that are)."""
    allowed = SOURCES[target]
    sources = allowed if sources is None else frozenset(JobStatus(s) for s in sources)
    if not sources or not sources <= allowed:
        bad = ", ".join(sorted(s.value for s in sources - allowed)) or "nothing"
        raise TransitionError(f"jobs cannot move from {bad} to {target}")
    return update(jobs_t).where(_status_in(sources), *where).values(status=target.value)


@functools.cache
def _move_stmt(target: JobStatus, keys: tuple[str, ...], fenced: bool) -> Any:
    where = [jobs_t.c.id == bindparam("p_job_id")] + ([jobs_t.c.token == bindparam("p_fence")] if fenced else [])
    return _guarded(target, *where, sources=[S.RUNNING] if fenced else None).values(
        {k: bindparam(f"p_{k}") for k in keys})


def _move(tx: _Tx, job_id: int, target: JobStatus, token: int | None = None, **values: Any) -> None:
    """Move one job to target, setting values. With a token the job must be running with that token
    (StaleTokenError otherwise); without, it must be in a state allowed to move (TransitionError)."""
    params = _p(job_id=job_id, fence=token, **values)
    if tx.run(_move_stmt(target, tuple(sorted(values)), token is not None), params).rowcount == 1:
        return
    row = tx.one(select(jobs_t.c.status, jobs_t.c.token).where(jobs_t.c.id == job_id))
    if row is None:
        raise StoreError(f"no job {job_id} in the database")
    if token is not None and (row[1] != token or row[0] != S.RUNNING.value):
        raise StaleTokenError(f"job {job_id}: token {token} is stale (the job is {row[0]}, token {row[1]})")
    raise TransitionError(f"job {job_id} is {row[0]}: it cannot move to {target}")


def _requeue(tx: _Tx, held: tuple, now: float, *, reason: str, outcome: str, count_attempt: bool) -> None:
    """A running job (id, token, attempts, max_attempts) goes back to pending, or to failed when
    its last counted attempt ended; its attempt row is closed."""
    job_id, token, attempts, max_attempts = held
    if count_attempt and attempts >= max_attempts:
        _move(tx, job_id, S.FAILED, token, lease_until=None, finished_at=now, error=reason)
    elif count_attempt:
        _move(tx, job_id, S.PENDING, token, lease_until=None, error=reason)
    else:  # a graceful stop: this attempt does not count
        _move(tx, job_id, S.PENDING, token, lease_until=None, attempts=attempts - 1)
    tx.run(Q_END_ATTEMPT, _p(job_id=job_id, fence=token, now=now, outcome=outcome, error=reason))


# --- named statements (bound values are p_<name>) --------------------------------------------------
_next_pending = (select(jobs_t.c.id).where(jobs_t.c.status == S.PENDING.value)
                 .order_by(jobs_t.c.priority.desc(), jobs_t.c.id))
_claimed = {"token": jobs_t.c.token + 1, "attempts": jobs_t.c.attempts + 1, "worker": bindparam("p_worker"),
            "host": bindparam("p_host"), "device": bindparam("p_device"), "lease_until": bindparam("p_lease"),
            "started_at": bindparam("p_now"), "finished_at": None}
_held = (jobs_t.c.id, jobs_t.c.token, jobs_t.c.attempts, jobs_t.c.max_attempts)
# FOR UPDATE [SKIP LOCKED] is for PostgreSQL, where claimers run side by side: a claim or a reap
# skips rows another transaction holds, and a select that precedes a fenced move locks its rows.
# SQLite renders none of it (BEGIN IMMEDIATE already serialises writers).
Q_CLAIM = (  # the next pending job by priority, then age: pending -> running, token + 1
    _guarded(S.RUNNING, jobs_t.c.id == _next_pending.limit(1).with_for_update(skip_locked=True).scalar_subquery())
    .values(_claimed).returning(*_held, jobs_t.c.sweep, jobs_t.c.config))
Q_CLAIM_SWEEP = (  # the same within one sweep
    _guarded(S.RUNNING, jobs_t.c.id == _next_pending.where(jobs_t.c.sweep == bindparam("p_sweep")).limit(1)
             .with_for_update(skip_locked=True).scalar_subquery())
    .values(_claimed).returning(*_held, jobs_t.c.sweep, jobs_t.c.config))
Q_START_ATTEMPT = insert(attempts_t).values(  # one history row per claim
    job_id=bindparam("p_job_id"), token=bindparam("p_token"), worker=bindparam("p_worker"),
    host=bindparam("p_host"), device=bindparam("p_device"), started_at=bindparam("p_now"))
Q_END_ATTEMPT = update(attempts_t).where(  # close the history row of (job, token)
    attempts_t.c.job_id == bindparam("p_job_id"), attempts_t.c.token == bindparam("p_fence"),
).values(ended_at=bindparam("p_now"), outcome=bindparam("p_outcome"), error=bindparam("p_error"))
Q_HELD = select(*_held).where(  # a job we hold with this token
    jobs_t.c.id == bindparam("p_job_id"), jobs_t.c.token == bindparam("p_fence"), jobs_t.c.status == S.RUNNING.value,
).with_for_update()
Q_EXPIRED = select(*_held).where(  # running jobs whose lease ran out
    jobs_t.c.status == S.RUNNING.value, jobs_t.c.lease_until < bindparam("p_now")).with_for_update(skip_locked=True)
Q_OF_WORKER = select(*_held).where(  # a worker's running jobs
    jobs_t.c.status == S.RUNNING.value, jobs_t.c.worker == bindparam("p_worker")).with_for_update()
Q_HEARTBEAT = update(jobs_t).where(  # renew a lease we still hold
    jobs_t.c.id == bindparam("p_job_id"), jobs_t.c.token == bindparam("p_fence"), jobs_t.c.status == S.RUNNING.value,
).values(lease_until=bindparam("p_lease"))
Q_RESULT, Q_METRIC, Q_ARRAY = insert(results_t), insert(metrics_t), insert(arrays_t)  # a job's final write


def _upserts(upsert: Any) -> tuple[Any, Any]:
    """(Q_ADD, Q_REGISTER) built with one dialect's insert (the same on_conflict API, separate classes)."""
    add = upsert(jobs_t).on_conflict_do_nothing(index_elements=[jobs_t.c.sweep, jobs_t.c.config_hash])  # idempotent
    register = upsert(workers_t).values(worker=bindparam("p_worker"), host=bindparam("p_host"), pid=bindparam("p_pid"),
                                        device=bindparam("p_device"), started_at=bindparam("p_now"),
                                        seen_at=bindparam("p_now"), version=bindparam("p_version"))
    return add, register.on_conflict_do_update(  # a worker (re)starts
        index_elements=[workers_t.c.worker],
        set_={c: register.excluded[c] for c in ("host", "pid", "device", "started_at", "seen_at", "version")}
        | {"job_id": None, "exited_at": None})


_by_dialect = {"sqlite": _upserts(sqlite_insert), "postgresql": _upserts(pg_insert)}
Q_ADD = {name: q[0] for name, q in _by_dialect.items()}        # by dialect name
Q_REGISTER = {name: q[1] for name, q in _by_dialect.items()}   # by dialect name
Q_SEEN = update(workers_t).where(workers_t.c.worker == bindparam("p_worker")).values(  # a worker is alive
    seen_at=bindparam("p_now"), job_id=bindparam("p_current"))
Q_EXITED = update(workers_t).where(  # a worker is gone
    workers_t.c.worker == bindparam("p_worker"), workers_t.c.exited_at.is_(None)).values(
    exited_at=bindparam("p_now"), job_id=None)


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


# --- URLs and opening ----------------------------------------------------------------------------
def sqlalchemy_url(db: str) -> str:
    """A file path becomes an absolute sqlite:/// URL; anything containing "://" is a URL already."""
    if "://" in db:
        return db
    return URL.create("sqlite", database=os.path.abspath(os.path.expanduser(db))).render_as_string(hide_password=False)


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


def _check_meta(values: dict[str, str], path: str, upgrade: bool = False) -> int:
    """The schema version of a runner database; UserError for another program's database, a newer
    schema, or (unless upgrading) an older one."""
    if values.get("app") != APP:
        raise UserError(f"{path} is a database of another program: choose another --db")
    version = int(values["schema_version"]) if str(values.get("schema_version")).isdigit() else None
    if version is None:
        raise UserError(f"{path} has no valid runner schema version: choose another --db")
    if version > SCHEMA_VERSION:
        raise UserError(f"{path} was made by a newer runner (schema {version} > {SCHEMA_VERSION}): upgrade runner")
    if version < SCHEMA_VERSION and not upgrade:
        raise UserError(f"{path} was made by an older runner (schema {version} < {SCHEMA_VERSION}): "
                        "run `runner db upgrade`")
    return version


def _needs_schema(tables: list[str], read_meta: Callable[[], dict[str, str]], where: str, create: bool,
                  upgrade: bool) -> bool:
    """Whether a database with these tables needs our schema created or upgraded; UserError when it
    may not be opened (missing without create, another program's, another version)."""
    if not tables:
        if not create:
            raise UserError(f"no runner database at {where}: run `runner submit` first or pass --db")
        return True
    if "meta" not in tables:
        raise UserError(f"{where} is a database of another program (tables: {', '.join(sorted(tables)[:4])}): "
                        "choose another --db")
    return _check_meta(read_meta(), where, upgrade) < SCHEMA_VERSION


def _inspect_sqlite_file(path: str, create: bool, upgrade: bool = False) -> bool:
    """Check, read-only and before anything is written, that path may be opened; True when the
    database still needs our schema (or, upgrading, a migration)."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise UserError(f"folder {folder} for the database {path} does not exist: create it or choose another --db")
    if not os.path.exists(path):
        return _needs_schema([], dict, path, create, upgrade)
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a file: choose another --db")
    with open(path, "rb") as f:
        header = f.read(16)
    if header and header != b"SQLite format 3\x00":
        raise UserError(f"{path} is not a SQLite database: choose another --db")
    tables: list[str] = []
    values: dict[str, str] = {}
    if header:
        # Read-write where allowed (nothing is written): a read-only connection to a WAL database
        # would leave its -wal and -shm files behind, since only a writer may delete them on close.
        mode = "rw" if os.access(path, os.W_OK) else "ro"
        try:
            con = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode={mode}", uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                values = dict(con.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path} is not a readable SQLite database ({exc}): choose another --db") from None
    return _needs_schema(tables, lambda: values, path, create, upgrade)


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN: Store._transact issues its own
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


# --- schema versions: MIGRATIONS[v] takes a database from schema v to v + 1, inside the write lock ----
def _to_schema_2(tx: _Tx) -> None:
    """1 -> 2: workers.version, the runner version each worker runs."""
    tx.ddl(f"ALTER TABLE workers ADD COLUMN version {workers_t.c.version.type.compile(dialect=tx.dialect)}")


MIGRATIONS: dict[int, Callable[[_Tx], None]] = {1: _to_schema_2}


def _chunks(ids: Sequence[int] | None) -> list[list[int] | None]:
    if ids is None:
        return [None]
    ordered = sorted({int(i) for i in ids})
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


# --- the store -------------------------------------------------------------------------------------
class Store:
    """One process's handle on the queue. Thread-safe: each call takes its own pooled connection.
    Never pickled: a child process opens its own Store from the URL string.

    upgrade=True migrates a database of an older schema (`runner db upgrade`) instead of refusing it;
    `upgraded_from` then holds the version it had. autocheckpoint=False (SQLite): this process's
    commits never copy the write-ahead log back into the file; another process calls
    `checkpoint_wal()` (the supervisor does, for its workers), so no claim pays for it."""

    def __init__(self, db: str, *, create: bool = False, lease_s: float = 60.0, upgrade: bool = False,
                 autocheckpoint: bool = True) -> None:
        self.url, self.shown, self.lease_s = sqlalchemy_url(db), display_url(db), float(lease_s)
        self.upgrade, self.upgraded_from, self._opened, self.autocheckpoint = upgrade, None, False, autocheckpoint
        self._reap_after, self._shortest_lease = 0.0, self.lease_s  # PostgreSQL's reap cadence (see claim)
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
        needs_schema = _inspect_sqlite_file(self.path, create, self.upgrade)
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
                self._tables(tx), lambda: dict(tx.all(select(meta_t.c.key, meta_t.c.value))), self.where, create,
                self.upgrade))
        except BaseException:
            self.close()
            raise

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

    def _tables(self, tx: _Tx) -> list[str]:
        """Names of the tables in the database (SQLite) or in the current schema (PostgreSQL)."""
        if self.sqlite:
            return [r[0] for r in tx.dbapi.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if tx.dbapi.execute("SELECT current_schema()").fetchone()[0] is None:
            raise UserError(f"{self.shown}: no schema of its search_path exists: create it (CREATE SCHEMA name) "
                            "or name another in options=-csearch_path=name")
        return [r[0] for r in tx.dbapi.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]

    def _ensure_schema(self, tx: _Tx) -> None:
        """Inside the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two racing
        submits create the schema once and two upgrades migrate once. DDL is transactional on both."""
        if not self.sqlite:
            tx.ddl("SELECT pg_advisory_xact_lock(hashtext('runner schema ' || current_schema()))")
        tables = self._tables(tx)
        if "meta" in tables:
            values = dict(tx.all(select(meta_t.c.key, meta_t.c.value)))
            version = _check_meta(values, self.where, self.upgrade)
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](tx)
            if version < SCHEMA_VERSION:
                tx.run(update(meta_t).where(meta_t.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
                self.upgraded_from = version
            return
        if tables:
            raise UserError(f"{self.where} is a database of another program: choose another --db")
        for table in metadata.sorted_tables:
            for ddl in (CreateTable(table), *map(CreateIndex, table.indexes)):
                tx.ddl(str(ddl.compile(dialect=tx.dialect)))
        tx.many(insert(meta_t), ("key", "value"), [("app", APP), ("schema_version", str(SCHEMA_VERSION))])

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

    # --- submit ----------------------------------------------------------------------------------
    def add_jobs(self, sweep: str, jobs: Sequence[tuple[str, dict]], *, priority: int = 0,
                 max_attempts: int = 3) -> tuple[int, int]:
        """Add (config_hash, config) pairs as pending jobs; returns (added, already there)."""
        if not isinstance(sweep, str) or not sweep:
            raise UserError(f"a sweep needs a non-empty name, got {sweep!r}")
        if max_attempts < 1:
            raise UserError(f"max_attempts must be at least 1, got {max_attempts}")
        jobs = list(jobs)
        hashes = select(jobs_t.c.config_hash).where(jobs_t.c.sweep == sweep)
        known = self._read(lambda tx: {r[0] for r in tx.all(hashes)}) if jobs else set()
        now, status = time.time(), S.PENDING.value  # rows are built before the write lock is taken
        rows = [(sweep, h, _dumps(config), status, int(priority), 0, int(max_attempts), 0, now)
                for h, config in jobs if h not in known]
        keys = ("sweep", "config_hash", "config", "status", "priority", "attempts", "max_attempts", "token",
                "created_at")
        added = self._write(lambda tx: tx.many(Q_ADD[tx.dialect.name], keys, rows)) if rows else 0  # ON CONFLICT: racing submits
        return added, len(jobs) - added

    # --- workers ---------------------------------------------------------------------------------
    def claim(self, worker: str, *, host: str, device: str, sweep: str | None = None,
              lease_s: float | None = None) -> ClaimedJob | None:
        """Reap expired leases, then take the next pending job (highest priority, oldest), or None.

        PostgreSQL: a process reaps at most every min(REAP_EVERY_S, its shortest lease / 4) seconds;
        finding expired leases scans the index entries of every job that ran since the last
        VACUUM (MVCC keeps them), which on every claim made a fast queue slower the longer it ran."""
        lease = self.lease_s if lease_s is None else lease_s
        self._shortest_lease = min(self._shortest_lease, lease)

        def body(tx: _Tx) -> ClaimedJob | None:
            now = time.time()
            if self.sqlite or now >= self._reap_after:
                self._reap(tx, now)
                self._reap_after = now + min(REAP_EVERY_S, self._shortest_lease / 4)
            params = _p(worker=worker, host=host, device=device, now=now, sweep=sweep, lease=now + lease)
            row = tx.one(Q_CLAIM if sweep is None else Q_CLAIM_SWEEP, params)
            if row is None:
                return None
            job_id, token, attempts, max_attempts, job_sweep, config = row
            tx.run(Q_START_ATTEMPT, params | _p(job_id=job_id, token=token))
            return ClaimedJob(job_id, job_sweep, json.loads(config), token, attempts, max_attempts)
        return self._write(body)

    def heartbeat(self, job_id: int, token: int, lease_s: float | None = None) -> bool:
        """Renew the lease; False when the job is no longer ours (stale token, cancelled, reaped)."""
        lease = time.time() + (self.lease_s if lease_s is None else lease_s)
        return self._write(lambda tx: tx.run(Q_HEARTBEAT, _p(job_id=job_id, fence=token, lease=lease)).rowcount == 1)

    def finish(self, job_id: int, token: int, outcome: JobOutcome) -> JobStatus:
        """Write a job's outcome in one transaction. A FAILED attempt with attempts left sends the job
        back to pending (error kept, no results). Returns the status the job is in now; raises
        StaleTokenError when the job is no longer ours (nothing is written then)."""
        status = JobStatus(outcome.status)
        if status not in (S.DONE, S.FAILED, S.DIVERGED):
            raise TransitionError(f"job {job_id}: a job finishes done, failed or diverged, not {status}")

        def body(tx: _Tx) -> JobStatus:
            now, target = time.time(), status
            if status is S.FAILED:
                held = tx.one(Q_HELD, _p(job_id=job_id, fence=token))
                if held is not None and held[2] < held[3]:
                    target = S.PENDING
            if target is S.PENDING:
                _move(tx, job_id, target, token, lease_until=None, error=outcome.error)
            else:  # the job ends: its one results row, its metrics and arrays
                _move(tx, job_id, target, token, lease_until=None, finished_at=now, error=outcome.error)
                tx.many(Q_RESULT, ("job_id", "summary"), [(job_id, _dumps(outcome.summary))])
                points = {(name, int(step)): float(value) for step, name, value in outcome.metrics}
                if points:
                    tx.many(Q_METRIC, ("job_id", "name", "step", "value"), ((job_id, *k, v) for k, v in points.items()))
                blobs = {(name, int(step)): bytes(data) for name, step, data in outcome.arrays}
                if blobs:
                    tx.many(Q_ARRAY, ("job_id", "name", "step", "data"), ((job_id, *k, d) for k, d in blobs.items()))
            tx.run(Q_END_ATTEMPT, _p(job_id=job_id, fence=token, now=now, outcome=status.value, error=outcome.error))
            return target
        return self._write(body)

    def release(self, job_id: int, token: int, *, reason: str, count_attempt: bool) -> bool:
        """Hand a running job back: pending, or failed when counted and out of attempts.
        count_attempt=False for a graceful stop. False when the job was no longer ours."""
        def body(tx: _Tx) -> bool:
            held = tx.one(Q_HELD, _p(job_id=job_id, fence=token))
            if held is not None:
                _requeue(tx, held, time.time(), reason=reason, outcome="released", count_attempt=count_attempt)
            return held is not None
        return self._write(body)

    def release_worker(self, worker: str, *, reason: str, count_attempt: bool = True) -> list[int]:
        """A worker process died: its running jobs go back to pending (or failed when out of
        attempts) and it is marked exited. Returns the ids of those jobs."""
        def body(tx: _Tx) -> list[int]:
            now, held = time.time(), tx.all(Q_OF_WORKER, _p(worker=worker))
            for row in held:
                _requeue(tx, row, now, reason=reason, outcome="lost", count_attempt=count_attempt)
            tx.run(Q_EXITED, _p(worker=worker, now=now))
            return [row[0] for row in held]
        return self._write(body)

    def reap_expired(self) -> int:
        """Running jobs whose lease ran out go back to pending (attempt counted) or to failed."""
        return self._write(lambda tx: self._reap(tx, time.time()))

    @staticmethod
    def _reap(tx: _Tx, now: float) -> int:
        expired = tx.all(Q_EXPIRED, _p(now=now))
        for row in expired:
            _requeue(tx, row, now, reason="lease expired: its worker stopped renewing it", outcome="expired",
                     count_attempt=True)
        return len(expired)

    def _check_named(self, sweep: str | None, job_ids: Sequence[int] | None) -> None:
        """UserError (before anything is written) when the sweep or one of the job ids is not in the database."""
        def body(tx: _Tx) -> tuple[bool, list[int]]:
            no_sweep = sweep is not None and tx.one(select(jobs_t.c.id).where(jobs_t.c.sweep == sweep).limit(1)) is None
            missing: list[int] = []
            for ids in _chunks(job_ids) if job_ids is not None else []:
                found = {r[0] for r in tx.all(select(jobs_t.c.id).where(jobs_t.c.id.in_(ids)))}
                missing += [i for i in ids if i not in found]
            return no_sweep, missing
        no_sweep, missing = self._read(body)
        if no_sweep:
            known = self.sweeps()
            raise UserError(f"no sweep {sweep!r} in {self.shown} (sweeps there: {', '.join(known[:10]) or 'none'}): "
                            "check the name with `runner status`")
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise UserError(f"no job {shown} in {self.shown}: check the ids with `runner results`")

    def cancel(self, *, sweep: str | None = None, job_ids: Sequence[int] | None = None) -> int:
        """Pending and running jobs of a sweep and/or with these ids -> cancelled; jobs in other
        states stay as they are. Returns how many were cancelled."""
        if sweep is None and job_ids is None:
            raise UserError("cancel needs a sweep or job ids")
        self._check_named(sweep, job_ids)

        def body(tx: _Tx) -> int:
            now, n = time.time(), 0
            for ids in _chunks(job_ids):
                where = [jobs_t.c.sweep == sweep] if sweep is not None else []
                where += [jobs_t.c.id.in_(ids)] if ids is not None else []
                running = select(jobs_t.c.id).where(jobs_t.c.status == S.RUNNING.value, *where)
                tx.run(update(attempts_t).where(attempts_t.c.ended_at.is_(None), attempts_t.c.job_id.in_(running))
                       .values(ended_at=now, outcome=S.CANCELLED.value))
                n += tx.run(_guarded(S.CANCELLED, *where).values(finished_at=now, lease_until=None)).rowcount
            return n
        return self._write(body)

    def retry(self, *, sweep: str | None = None, statuses: Sequence[JobStatus] = (S.FAILED,)) -> int:
        """Put failed (or diverged, cancelled) jobs back to pending with attempts reset to 0. Their
        results, metrics and arrays are deleted (the attempt history stays). Returns how many."""
        sources = {JobStatus(s) for s in statuses}
        if S.RUNNING in sources:
            raise TransitionError("retry does not take running jobs (a worker holds them): cancel them first")
        self._check_named(sweep, None)
        where = [jobs_t.c.sweep == sweep] if sweep is not None else []
        move = _guarded(S.PENDING, *where, sources=sources).values(attempts=0, error=None, finished_at=None,
                                                                  lease_until=None)
        chosen = select(jobs_t.c.id).where(_status_in(sources), *where)

        def body(tx: _Tx) -> int:
            for table in (results_t, metrics_t, arrays_t):
                tx.run(delete(table).where(table.c.job_id.in_(chosen)))
            return tx.run(move).rowcount
        return self._write(body)

    # --- worker registry (for status displays) -----------------------------------------------------
    def register_worker(self, worker: str, *, host: str, pid: int, device: str) -> None:
        params = _p(worker=worker, host=host, pid=pid, device=device, now=time.time(), version=__version__)
        self._write(lambda tx: tx.run(Q_REGISTER[tx.dialect.name], params))

    def worker_seen(self, worker: str, *, job_id: int | None) -> None:
        self._write(lambda tx: tx.run(Q_SEEN, _p(worker=worker, now=time.time(), current=job_id)))

    def worker_exited(self, worker: str) -> None:
        self._write(lambda tx: tx.run(Q_EXITED, _p(worker=worker, now=time.time())))

    # --- reading -----------------------------------------------------------------------------------
    def sweeps(self) -> list[str]:
        """Sweep names, oldest first."""
        stmt = select(jobs_t.c.sweep).group_by(jobs_t.c.sweep).order_by(func.min(jobs_t.c.id))
        return [r[0] for r in self._read(lambda tx: tx.all(stmt))]

    def counts(self, sweep: str | None = None) -> dict[str, dict[str, int]]:
        """{sweep: {status: n}} with every status present (0 where none)."""
        stmt = select(jobs_t.c.sweep, jobs_t.c.status, func.count()).group_by(jobs_t.c.sweep, jobs_t.c.status)
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        out: dict[str, dict[str, int]] = {}
        for name, status, n in self._read(lambda tx: tx.all(stmt)):
            out.setdefault(name, {s.value: 0 for s in JobStatus})[status] = n
        return out

    def device_counts(self, sweep: str | None = None, *, since: float) -> list[dict]:
        """Per device: done, running, and finished_since (done, failed or diverged after `since`)."""
        def count(condition: Any) -> Any:
            return func.sum(case((condition, 1), else_=0))
        finished = and_(_status_in([S.DONE, S.FAILED, S.DIVERGED]), jobs_t.c.finished_at >= since)
        stmt = (select(jobs_t.c.device, count(jobs_t.c.status == S.DONE.value).label("done"),
                       count(jobs_t.c.status == S.RUNNING.value).label("running"),
                       count(finished).label("finished_since"))
                .where(jobs_t.c.device.is_not(None)).group_by(jobs_t.c.device).order_by(jobs_t.c.device))
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        return self._read(lambda tx: tx.dicts(stmt))

    def result_rows(self, sweep: str | None = None) -> list[dict]:
        """One dict per job: job_id, sweep, config, status, attempts, summary ({} if none), error,
        created_at, finished_at."""
        stmt = (select(jobs_t.c.id.label("job_id"), jobs_t.c.sweep, jobs_t.c.config, jobs_t.c.status, jobs_t.c.attempts,
                       results_t.c.summary, jobs_t.c.error, jobs_t.c.created_at, jobs_t.c.finished_at)
                .select_from(jobs_t.outerjoin(results_t, results_t.c.job_id == jobs_t.c.id)).order_by(jobs_t.c.id))
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        rows = self._read(lambda tx: tx.dicts(stmt))
        for row in rows:
            row["config"], row["summary"] = json.loads(row["config"]), json.loads(row["summary"] or "{}")
        return rows

    def metric_rows(self, sweep: str | None = None, job_ids: Sequence[int] | None = None,
                    names: Sequence[str] | None = None) -> list[tuple[int, int, str, float]]:
        """(job_id, step, name, value) ordered by job, name, step; NaN comes back as NaN."""
        base = select(metrics_t.c.job_id, metrics_t.c.step, metrics_t.c.name, metrics_t.c.value)
        if sweep is not None:
            base = base.join(jobs_t, jobs_t.c.id == metrics_t.c.job_id).where(jobs_t.c.sweep == sweep)
        if names is not None:
            base = base.where(metrics_t.c.name.in_(list(names)))
        base = base.order_by(metrics_t.c.job_id, metrics_t.c.name, metrics_t.c.step)

        def body(tx: _Tx) -> list[tuple[int, int, str, float]]:
            out = []
            for ids in _chunks(job_ids):
                rows = tx.all(base if ids is None else base.where(metrics_t.c.job_id.in_(ids)))
                out += [(j, s, n, float("nan") if v is None else v) for j, s, n, v in rows]
            return out
        return self._read(body)

    def array_rows(self, job_id: int, name: str | None = None) -> list[tuple[str, int, bytes]]:
        """(name, step, npy bytes) of one job, ordered by name and step."""
        stmt = (select(arrays_t.c.name, arrays_t.c.step, arrays_t.c.data).where(arrays_t.c.job_id == job_id)
                .order_by(arrays_t.c.name, arrays_t.c.step))
        stmt = stmt.where(arrays_t.c.name == name) if name is not None else stmt
        return [(n, s, bytes(d)) for n, s, d in self._read(lambda tx: tx.all(stmt))]

    def attempt_rows(self, job_id: int) -> list[dict]:
        """One job's history, oldest first: attempt (= its token), token, worker, host, device,
        started_at, ended_at, outcome, error."""
        stmt = select(attempts_t.c.token.label("attempt"), *attempts_t.c).where(attempts_t.c.job_id == job_id)
        return self._read(lambda tx: tx.dicts(stmt.order_by(attempts_t.c.token)))

    def worker_rows(self) -> list[dict]:
        """The worker registry: worker, host, pid, device, started_at, seen_at, job_id, exited_at."""
        return self._read(lambda tx: tx.dicts(select(workers_t).order_by(workers_t.c.started_at)))

    def job_status(self, job_id: int) -> JobStatus:
        row = self._read(lambda tx: tx.one(select(jobs_t.c.status).where(jobs_t.c.id == job_id)))
        if row is None:
            raise UserError(f"no job {job_id} in {self.shown}")
        return JobStatus(row[0])

    # --- reading for results(), curves(), `runner jobs`, `runner show` and `runner status` ------------
    def job_table(self, sweep: str | None = None, *, job_ids: Sequence[int] | None = None,
                  statuses: Sequence[JobStatus] | None = None, limit: int | None = None) -> dict[str, list]:
        """Jobs ordered by id as columns (name -> list), for building frames in bulk: job_id, sweep,
        config and summary (JSON text; summary None until a results row exists), status, attempts,
        max_attempts, priority, worker, host, device, created_at, started_at, finished_at, error."""
        cols = (jobs_t.c.id.label("job_id"), jobs_t.c.sweep, jobs_t.c.config, results_t.c.summary, jobs_t.c.status,
                jobs_t.c.attempts, jobs_t.c.max_attempts, jobs_t.c.priority, jobs_t.c.worker, jobs_t.c.host,
                jobs_t.c.device, jobs_t.c.created_at, jobs_t.c.started_at, jobs_t.c.finished_at, jobs_t.c.error)
        base = (select(*cols).select_from(jobs_t.outerjoin(results_t, results_t.c.job_id == jobs_t.c.id))
                .order_by(jobs_t.c.id))
        base = base.where(_status_in(statuses)) if statuses else base

        def body(tx: _Tx) -> list[tuple]:
            rows: list[tuple] = []
            for ids in _chunks(job_ids):
                stmt = self._in_sweep(tx, base, sweep, by_span=ids is None and not statuses)
                stmt = stmt if ids is None else stmt.where(jobs_t.c.id.in_(ids))
                rows += tx.all(stmt if limit is None else stmt.limit(limit - len(rows)))
                if limit is not None and len(rows) >= limit:
                    break
            return rows
        rows = self._read(body)
        return {c.name: list(values) for c, values in zip(cols, zip(*rows) if rows else [()] * len(cols))}

    @staticmethod
    def _in_sweep(tx: _Tx, stmt: Any, sweep: str | None, *, by_span: bool) -> Any:
        """stmt narrowed to one sweep's jobs. by_span: read them as the id range the sweep spans,
        in id order, with the sweep index kept out of it (`sweep || ''`): for a big sweep a range
        scan is several times faster than the index's random reads and sort."""
        if sweep is None:
            return stmt
        if not by_span:
            return stmt.where(jobs_t.c.sweep == sweep)
        lo, hi = tx.one(select(func.min(jobs_t.c.id), func.max(jobs_t.c.id)).where(jobs_t.c.sweep == sweep))
        return stmt.where(jobs_t.c.id.between(lo, hi) if lo is not None else jobs_t.c.id.is_(None),
                          (jobs_t.c.sweep + "") == sweep)

    def config_table(self, sweep: str | None = None, *, job_ids: Sequence[int] | None = None) -> dict[str, list]:
        """job_id, sweep and config (JSON text) as columns, ordered by id: what curves() joins on."""
        base = select(jobs_t.c.id, jobs_t.c.sweep, jobs_t.c.config).order_by(jobs_t.c.id)

        def body(tx: _Tx) -> list[tuple]:
            if job_ids is None:
                return tx.all(self._in_sweep(tx, base, sweep, by_span=True))
            stmt = self._in_sweep(tx, base, sweep, by_span=False)
            return [r for ids in _chunks(job_ids) for r in tx.all(stmt.where(jobs_t.c.id.in_(ids)))]
        rows = self._read(body)
        columns = zip(*rows) if rows else [(), (), ()]
        return {name: list(values) for name, values in zip(("job_id", "sweep", "config"), columns)}

    def metric_summary(self, job_id: int) -> list[dict]:
        """Per metric of one job: name, points, first_step, last_step, last_value (NaN for NULL)."""
        m = metrics_t.c
        agg = (select(m.name, func.count().label("points"), func.min(m.step).label("first_step"),
                      func.max(m.step).label("last_step")).where(m.job_id == job_id).group_by(m.name).subquery())
        stmt = (select(agg, m.value.label("last_value"))
                .join(metrics_t, and_(m.job_id == job_id, m.name == agg.c.name, m.step == agg.c.last_step))
                .order_by(agg.c.name))
        rows = self._read(lambda tx: tx.dicts(stmt))
        for row in rows:
            row["last_value"] = float("nan") if row["last_value"] is None else row["last_value"]
        return rows

    def array_summary(self, job_id: int) -> list[dict]:
        """Per array name of one job: name, steps (how many), first_step, last_step, bytes (all steps)."""
        a = arrays_t.c
        stmt = (select(a.name, func.count().label("steps"), func.min(a.step).label("first_step"),
                       func.max(a.step).label("last_step"), func.sum(func.length(a.data)).label("bytes"))
                .where(a.job_id == job_id).group_by(a.name).order_by(a.name))
        return self._read(lambda tx: tx.dicts(stmt))

    def running_jobs(self, sweep: str | None = None) -> list[dict]:
        """Running jobs ordered by id: job_id, sweep, worker, host, device, started_at, lease_until."""
        stmt = (select(jobs_t.c.id.label("job_id"), jobs_t.c.sweep, jobs_t.c.worker, jobs_t.c.host, jobs_t.c.device,
                       jobs_t.c.started_at, jobs_t.c.lease_until)
                .where(jobs_t.c.status == S.RUNNING.value).order_by(jobs_t.c.id))
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        return self._read(lambda tx: tx.dicts(stmt))

    def activity(self, since: float, sweep: str | None = None) -> dict[str, dict[str, Any]]:
        """Per sweep: finished (jobs done, failed or diverged at or after `since`) and first_started
        (the earliest attempt start, None before any): what a throughput over a window needs."""
        finished = (select(jobs_t.c.sweep, func.count()).where(_status_in([S.DONE, S.FAILED, S.DIVERGED]),
                                                                jobs_t.c.finished_at >= since)
                    .group_by(jobs_t.c.sweep))
        first = (select(jobs_t.c.sweep, func.min(attempts_t.c.started_at))
                 .select_from(attempts_t.join(jobs_t, jobs_t.c.id == attempts_t.c.job_id)).group_by(jobs_t.c.sweep))
        if sweep is not None:
            finished, first = finished.where(jobs_t.c.sweep == sweep), first.where(jobs_t.c.sweep == sweep)

        def body(tx: _Tx) -> dict[str, dict[str, Any]]:
            out = {name: {"finished": 0, "first_started": start} for name, start in tx.all(first)}
            for name, n in tx.all(finished):
                out.setdefault(name, {"finished": 0, "first_started": None})["finished"] = n
            return out
        return self._read(body)

    def recent_failures(self, sweep: str | None = None, limit: int = 5) -> list[dict]:
        """The latest attempts that ended failed, diverged, lost or expired, newest first: job_id,
        sweep, attempt (its token), worker, host, device, ended_at, outcome, error."""
        at = attempts_t.c
        stmt = (select(at.job_id, jobs_t.c.sweep, at.token.label("attempt"), at.worker, at.host, at.device,
                       at.ended_at, at.outcome, at.error)
                .select_from(attempts_t.join(jobs_t, jobs_t.c.id == at.job_id))
                .where(or_(*(at.outcome == o for o in ("diverged", "expired", "failed", "lost"))))
                .order_by(at.ended_at.desc(), at.job_id.desc()).limit(limit))
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        return self._read(lambda tx: tx.dicts(stmt))
