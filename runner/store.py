"""The job queue and everything it stores: the only module that holds SQL (SQLAlchemy 2 Core).

Jobs move through one table of allowed transitions (TRANSITIONS); every move is one guarded
UPDATE (`... WHERE status IN (allowed sources)`) whose row count is checked. Workers claim a job
atomically, renew its lease with heartbeats and write back with their fencing token; a stale token
is refused. SQLite is the embedded backend: WAL, a long busy timeout, `BEGIN IMMEDIATE` for every
write transaction, and a bounded retry for the rare immediate "database is locked".
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
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from sqlalchemy import (CheckConstraint, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, UniqueConstraint, and_, bindparam, case, create_engine, delete, event, func,
                        insert, inspect, select, update)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import insert as upsert  # PostgreSQL's insert has the same on_conflict API
from sqlalchemy.engine import Connection, make_url

from .errors import StaleTokenError, StoreError, TransitionError, UserError

__all__ = ["JobStatus", "TRANSITIONS", "SCHEMA_VERSION", "ClaimedJob", "JobOutcome", "Store", "sqlalchemy_url",
           "display_url", "StaleTokenError", "StoreError", "TransitionError"]

SCHEMA_VERSION = 1
APP = "runner"
BUSY_TIMEOUT_S = 60.0
BUSY_RETRIES = 12        # immediate "database is locked" errors retried, with jittered backoff
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
FINISHED = (S.DONE.value, S.FAILED.value, S.DIVERGED.value)


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
    metrics: Sequence[tuple[int, str, float]] = ()   # (step, name, value)
    arrays: Sequence[tuple[str, int, bytes]] = ()    # (name, step, npy bytes)
    error: str | None = None                         # traceback (FAILED) or reason (DIVERGED)


# --- schema ----------------------------------------------------------------------------------
metadata = MetaData()
meta_t = Table("meta", metadata, Column("key", String, primary_key=True), Column("value", String, nullable=False))
jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sweep", String, nullable=False),
    Column("config_hash", String, nullable=False),
    Column("config", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("token", Integer, nullable=False),
    Column("worker", String), Column("host", String), Column("device", String),
    Column("lease_until", Float),
    Column("created_at", Float, nullable=False), Column("started_at", Float), Column("finished_at", Float),
    Column("error", Text),
    UniqueConstraint("sweep", "config_hash"),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in JobStatus)})", name="ck_jobs_status"),
)
Index("ix_jobs_claim", jobs.c.status, jobs.c.priority.desc(), jobs.c.id)
Index("ix_jobs_sweep", jobs.c.sweep, jobs.c.status, jobs.c.priority.desc(), jobs.c.id)
results_t = Table("results", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                  Column("summary", Text, nullable=False))
metrics_t = Table("metrics", metadata, Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
                  Column("name", String, primary_key=True), Column("step", Integer, primary_key=True),
                  Column("value", Float),  # NULL is NaN: SQLite stores NaN as NULL
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
                  Column("seen_at", Float), Column("job_id", Integer), Column("exited_at", Float))


# --- state moves: the one place a job's status changes -------------------------------------------
def _guarded(target: JobStatus, *where: Any, sources: Iterable[JobStatus] | None = None):
    """UPDATE jobs SET status=target WHERE status IN sources AND where; sources must be allowed."""
    allowed = SOURCES[target]
    sources = allowed if sources is None else frozenset(JobStatus(s) for s in sources)
    if not sources or not sources <= allowed:
        bad = ", ".join(sorted(s.value for s in sources - allowed)) or "nothing"
        raise TransitionError(f"jobs cannot move from {bad} to {target}")
    return update(jobs).where(jobs.c.status.in_(sorted(s.value for s in sources)), *where).values(status=target.value)


@functools.lru_cache(maxsize=None)
def _move_stmt(target: JobStatus, keys: tuple[str, ...], fenced: bool):
    where = [jobs.c.id == bindparam("p_job_id")] + ([jobs.c.token == bindparam("p_fence")] if fenced else [])
    stmt = _guarded(target, *where, sources=[S.RUNNING] if fenced else None)
    return stmt.values({k: bindparam(f"p_{k}") for k in keys})


def _move(conn: Connection, job_id: int, target: JobStatus, token: int | None = None, **values: Any) -> None:
    """Move one job to target (fenced by token when given: then it must be running with that token)."""
    params = _p(job_id=job_id, **values) | (_p(fence=token) if token is not None else {})
    if conn.execute(_move_stmt(target, tuple(sorted(values)), token is not None), params).rowcount == 1:
        return
    row = conn.execute(select(jobs.c.status, jobs.c.token).where(jobs.c.id == job_id)).first()
    if row is None:
        raise StoreError(f"no job {job_id} in the database")
    if token is not None and (row.token != token or row.status != S.RUNNING.value):
        raise StaleTokenError(f"job {job_id}: token {token} is stale (the job is {row.status}, token {row.token})")
    raise TransitionError(f"job {job_id} is {row.status}: it cannot move to {target}")


# --- named statements --------------------------------------------------------------------------
_next_pending = select(jobs.c.id).where(jobs.c.status == S.PENDING.value).order_by(jobs.c.priority.desc(), jobs.c.id)
_claim_values = dict(token=jobs.c.token + 1, attempts=jobs.c.attempts + 1, worker=bindparam("p_worker"),
                     host=bindparam("p_host"), device=bindparam("p_device"), lease_until=bindparam("p_lease"),
                     started_at=bindparam("p_now"), finished_at=None)
_returning = (jobs.c.id, jobs.c.sweep, jobs.c.config, jobs.c.token, jobs.c.attempts, jobs.c.max_attempts)
Q_CLAIM_ANY = (  # the next pending job by priority, then age: pending -> running, token + 1
    _guarded(S.RUNNING, jobs.c.id == _next_pending.limit(1).scalar_subquery())
    .values(_claim_values).returning(*_returning))
Q_CLAIM_SWEEP = (  # the same, within one sweep
    _guarded(S.RUNNING, jobs.c.id == _next_pending.where(jobs.c.sweep == bindparam("p_sweep")).limit(1).scalar_subquery())
    .values(_claim_values).returning(*_returning))
Q_START_ATTEMPT = insert(attempts_t).values(  # one history row per claim
    job_id=bindparam("p_job_id"), token=bindparam("p_token"), worker=bindparam("p_worker"), host=bindparam("p_host"),
    device=bindparam("p_device"), started_at=bindparam("p_now"))
Q_END_ATTEMPT = (update(attempts_t)  # close the history row of (job, token)
                 .where(attempts_t.c.job_id == bindparam("p_job_id"), attempts_t.c.token == bindparam("p_fence"))
                 .values(ended_at=bindparam("p_now"), outcome=bindparam("p_outcome"), error=bindparam("p_error")))
Q_OWNED = select(jobs.c.id, jobs.c.token, jobs.c.attempts, jobs.c.max_attempts).where(  # a job we hold
    jobs.c.id == bindparam("p_job_id"), jobs.c.token == bindparam("p_fence"), jobs.c.status == S.RUNNING.value)
Q_EXPIRED = select(jobs.c.id, jobs.c.token, jobs.c.attempts, jobs.c.max_attempts).where(  # leases run out
    jobs.c.status == S.RUNNING.value, jobs.c.lease_until < bindparam("p_now"))
Q_OF_WORKER = select(jobs.c.id, jobs.c.token, jobs.c.attempts, jobs.c.max_attempts).where(  # a worker's jobs
    jobs.c.status == S.RUNNING.value, jobs.c.worker == bindparam("p_worker"))
Q_HEARTBEAT = update(jobs).where(  # renew a lease we still hold
    jobs.c.id == bindparam("p_job_id"), jobs.c.token == bindparam("p_fence"), jobs.c.status == S.RUNNING.value,
).values(lease_until=bindparam("p_lease"))
Q_ADD = upsert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.sweep, jobs.c.config_hash])  # idempotent submit
Q_RESULT = insert(results_t)
Q_METRIC = insert(metrics_t)
Q_ARRAY = insert(arrays_t)
_REGISTER = upsert(workers_t).values(worker=bindparam("p_worker"), host=bindparam("p_host"), pid=bindparam("p_pid"),
                                     device=bindparam("p_device"), started_at=bindparam("p_now"), seen_at=bindparam("p_now"))
Q_REGISTER = _REGISTER.on_conflict_do_update(  # a worker (re)starts
    index_elements=[workers_t.c.worker],
    set_=dict(host=_REGISTER.excluded.host, pid=_REGISTER.excluded.pid, device=_REGISTER.excluded.device,
              started_at=_REGISTER.excluded.started_at, seen_at=_REGISTER.excluded.seen_at, job_id=None, exited_at=None))
Q_SEEN = update(workers_t).where(workers_t.c.worker == bindparam("p_worker")).values(  # a worker is alive
    seen_at=bindparam("p_now"), job_id=bindparam("p_current"))
Q_EXITED = update(workers_t).where(workers_t.c.worker == bindparam("p_worker")).values(  # a worker is gone
    exited_at=bindparam("p_now"), job_id=None)


# --- URLs and opening --------------------------------------------------------------------------
def sqlalchemy_url(db: str) -> str:
    """A file path becomes an absolute sqlite:/// URL; anything containing "://" is a URL already."""
    if "://" in db:
        return db
    return f"sqlite:///{os.path.abspath(os.path.expanduser(db))}"


def display_url(db: str) -> str:
    """The URL with any password replaced by ***: the only form of a URL that messages show."""
    try:
        return make_url(sqlalchemy_url(db)).render_as_string(hide_password=True)
    except Exception:  # not parseable: mask what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", db)


def _check_meta(values: dict[str, str], where: str) -> None:
    if values.get("app") != APP:
        raise UserError(f"{where} is a database of another program: choose another --db")
    try:
        version = int(values.get("schema_version", ""))
    except ValueError:
        raise UserError(f"{where} has no valid runner schema version: choose another --db") from None
    if version > SCHEMA_VERSION:
        raise UserError(f"{where} was made by a newer runner (schema {version} > {SCHEMA_VERSION}): upgrade runner")
    if version < SCHEMA_VERSION:
        raise UserError(f"{where} was made by an older runner (schema {version} < {SCHEMA_VERSION}): "
                        "run `runner db upgrade`")


def _inspect_sqlite_file(path: str, create: bool) -> bool:
    """Check, read-only, that path may be opened; True when it still needs our schema."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise UserError(f"folder {folder} for the database {path} does not exist: create it or choose another --db")
    missing = f"no runner database at {path}: run `runner submit` first or pass --db"
    if not os.path.exists(path):
        if not create:
            raise UserError(missing)
        return True
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a file: choose another --db")
    with open(path, "rb") as f:
        header = f.read(16)
    if header and header != b"SQLite format 3\x00":
        raise UserError(f"{path} is not a SQLite database: choose another --db")
    tables: set[str] = set()
    if header:
        try:
            con = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                values = dict(con.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path} is not a readable SQLite database ({exc}): choose another --db") from None
    if not tables - {"sqlite_sequence"}:
        if not create:
            raise UserError(missing)
        return True
    if "meta" not in tables:
        raise UserError(f"{path} is a database of another program (tables: {', '.join(sorted(tables)[:4])}): "
                        "choose another --db")
    _check_meta(values, path)
    return False


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
    for pragma in (f"busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}", "journal_mode = WAL", "synchronous = NORMAL",
                   "foreign_keys = ON"):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("runner_write") else "BEGIN")


def _is_busy(exc: sa_exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return isinstance(exc, sa_exc.OperationalError) and ("locked" in text or "busy" in text)


def _p(**params: Any) -> dict[str, Any]:
    """Bound values for the named statements. Their names carry a p_ prefix because a key that
    equals a column name would be added to an UPDATE's SET clause."""
    return {f"p_{k}": v for k, v in params.items()}


def _chunks(ids: Sequence[int] | None) -> list[list[int] | None]:
    if ids is None:
        return [None]
    ids = sorted({int(i) for i in ids})
    return [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# --- the store -----------------------------------------------------------------------------------
class Store:
    """One process's handle on the queue. Thread-safe (each call takes its own pooled connection);
    never pickled: a child process opens its own Store from the URL string."""

    def __init__(self, db: str, *, create: bool = False, lease_s: float = 60.0) -> None:
        self.url, self.shown, self.lease_s = sqlalchemy_url(db), display_url(db), float(lease_s)
        try:
            url = make_url(self.url)
            url.get_dialect()
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
            raise UserError(f"cannot use the database URL {self.shown}: {str(exc).splitlines()[0]}") from None
        if url.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise UserError(f"cannot use {self.shown}: this runner stores jobs in SQLite only for now; "
                            "pass a file path with --db")
        if url.database in (None, "", ":memory:") or (url.query.get("mode") == "memory"):
            raise UserError(f"cannot use {self.shown}: worker processes cannot share an in-memory database; "
                            "pass a file path with --db")
        self.path = os.path.abspath(url.database)
        needs_schema = _inspect_sqlite_file(self.path, create)
        self._engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S},
                                     pool_size=4, max_overflow=8)
        event.listen(self._engine, "connect", _on_connect)
        event.listen(self._engine, "begin", _on_begin)
        if needs_schema:
            try:
                self._write(self._ensure_schema)
            except BaseException:
                self.close()
                raise

    def _ensure_schema(self, conn: Connection) -> None:
        tables = set(inspect(conn).get_table_names()) - {"sqlite_sequence"}
        if not tables:
            metadata.create_all(conn)
            conn.execute(insert(meta_t), [{"key": "app", "value": APP},
                                          {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
        elif "meta" not in tables:
            raise UserError(f"{self.path} is a database of another program: choose another --db")
        else:
            _check_meta(dict(conn.execute(select(meta_t.c.key, meta_t.c.value)).all()), self.path)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a Store cannot be pickled: pass the database URL and open a Store in the child")

    # --- transactions ---------------------------------------------------------------------------
    def _transact(self, body: Callable[[Connection], T], write: bool) -> T:
        """Run body in one transaction (BEGIN IMMEDIATE when writing); retry a busy database."""
        started = time.monotonic()
        for attempt in range(1, BUSY_RETRIES + 1):
            try:
                with self._engine.connect() as conn:
                    if write:
                        conn.execution_options(runner_write=True)
                    with conn.begin():
                        return body(conn)
            except sa_exc.DBAPIError as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from exc
                if attempt == BUSY_RETRIES:
                    waited = time.monotonic() - started
                    raise UserError(f"{self.shown} stayed locked for {waited:.0f} s (another program holds it?): "
                                    "close it and try again") from exc
                time.sleep(min(0.01 * 2 ** attempt, 1.0) * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable")

    def _write(self, body: Callable[[Connection], T]) -> T:
        return self._transact(body, write=True)

    def _read(self, body: Callable[[Connection], T]) -> T:
        return self._transact(body, write=False)

    def _error(self, exc: sa_exc.DBAPIError) -> RuntimeError:
        text = str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
        if any(s in text.lower() for s in ("readonly", "read-only", "disk is full", "unable to open", "disk i/o")):
            return UserError(f"{self.shown}: {text}: check the file, its folder's permissions and free disk space")
        return StoreError(f"{self.shown}: {text}")

    # --- submit ---------------------------------------------------------------------------------
    def add_jobs(self, sweep: str, jobs: Sequence[tuple[str, dict]], *, priority: int = 0,
                 max_attempts: int = 3) -> tuple[int, int]:
        """Add (config_hash, config) pairs as pending jobs; returns (added, already there)."""
        if not isinstance(sweep, str) or not sweep:
            raise UserError(f"a sweep needs a non-empty name, got {sweep!r}")
        if max_attempts < 1:
            raise UserError(f"max_attempts must be at least 1, got {max_attempts}")
        now = time.time()
        rows = [{"sweep": sweep, "config_hash": h, "config": _dumps(config), "status": S.PENDING.value,
                 "priority": int(priority), "attempts": 0, "max_attempts": int(max_attempts), "token": 0,
                 "created_at": now} for h, config in jobs]
        if not rows:
            return 0, 0
        added = self._write(lambda conn: conn.execute(Q_ADD, rows).rowcount)
        return added, len(rows) - added

    # --- workers --------------------------------------------------------------------------------
    def claim(self, worker: str, *, host: str, device: str, sweep: str | None = None,
              lease_s: float | None = None) -> ClaimedJob | None:
        """Reap expired leases, then take the next pending job (highest priority, oldest): or None."""
        def body(conn: Connection) -> ClaimedJob | None:
            now = time.time()
            self._reap(conn, now)
            params = _p(worker=worker, host=host, device=device, now=now, sweep=sweep,
                        lease=now + (self.lease_s if lease_s is None else lease_s))
            row = conn.execute(Q_CLAIM_ANY if sweep is None else Q_CLAIM_SWEEP, params).first()
            if row is None:
                return None
            conn.execute(Q_START_ATTEMPT, {**params, **_p(job_id=row.id, token=row.token)})
            return ClaimedJob(row.id, row.sweep, json.loads(row.config), row.token, row.attempts, row.max_attempts)
        return self._write(body)

    def heartbeat(self, job_id: int, token: int, lease_s: float | None = None) -> bool:
        """Renew the lease; False when the job is no longer ours (stale token, cancelled, reaped)."""
        lease = time.time() + (self.lease_s if lease_s is None else lease_s)
        return self._write(lambda c: c.execute(Q_HEARTBEAT, _p(job_id=job_id, fence=token, lease=lease))
                           .rowcount == 1)

    def finish(self, job_id: int, token: int, outcome: JobOutcome) -> JobStatus:
        """Write a job's outcome in one transaction; a FAILED attempt with attempts left goes back to
        pending. Returns the status the job ended in; StaleTokenError when the job is no longer ours."""
        status = JobStatus(outcome.status)
        if status not in (S.DONE, S.FAILED, S.DIVERGED):
            raise TransitionError(f"job {job_id}: a job finishes done, failed or diverged, not {status}")

        def body(conn: Connection) -> JobStatus:
            now = time.time()
            target = status
            if status is S.FAILED:
                row = conn.execute(Q_OWNED, _p(job_id=job_id, fence=token)).first()
                if row is not None and row.attempts < row.max_attempts:
                    target = S.PENDING
            ended = {"lease_until": None, "error": outcome.error}
            _move(conn, job_id, target, token, **ended, **({} if target is S.PENDING else {"finished_at": now}))
            if target is not S.PENDING:  # results are written once, by the attempt that ends the job
                conn.execute(Q_RESULT, {"job_id": job_id, "summary": _dumps(outcome.summary)})
                points = {(name, int(step)): float(value) for step, name, value in outcome.metrics}
                if points:
                    conn.execute(Q_METRIC, [{"job_id": job_id, "name": n, "step": s, "value": v}
                                            for (n, s), v in points.items()])
                blobs = {(name, int(step)): bytes(data) for name, step, data in outcome.arrays}
                if blobs:
                    conn.execute(Q_ARRAY, [{"job_id": job_id, "name": n, "step": s, "data": d}
                                           for (n, s), d in blobs.items()])
            conn.execute(Q_END_ATTEMPT, _p(job_id=job_id, fence=token, now=now, outcome=status.value,
                                            error=outcome.error))
            return target
        return self._write(body)

    def release(self, job_id: int, token: int, *, reason: str, count_attempt: bool) -> bool:
        """Hand a running job back (running -> pending; failed when counted and out of attempts).
        count_attempt=False for a graceful stop. False when the job was no longer ours."""
        def body(conn: Connection) -> bool:
            row = conn.execute(Q_OWNED, _p(job_id=job_id, fence=token)).first()
            if row is None:
                return False
            _requeue(conn, row, time.time(), reason=reason, outcome="released", count_attempt=count_attempt)
            return True
        return self._write(body)

    def release_worker(self, worker: str, *, reason: str, count_attempt: bool = True) -> list[int]:
        """A worker process died: its running jobs go back to pending (or failed); returns their ids."""
        def body(conn: Connection) -> list[int]:
            now = time.time()
            rows = conn.execute(Q_OF_WORKER, _p(worker=worker)).all()
            for row in rows:
                _requeue(conn, row, now, reason=reason, outcome="lost", count_attempt=count_attempt)
            conn.execute(Q_EXITED.where(workers_t.c.exited_at.is_(None)), _p(worker=worker, now=now))
            return [row.id for row in rows]
        return self._write(body)

    def reap_expired(self) -> int:
        """Running jobs whose lease ran out go back to pending (attempt counted) or to failed."""
        return self._write(lambda conn: self._reap(conn, time.time()))

    def _reap(self, conn: Connection, now: float) -> int:
        rows = conn.execute(Q_EXPIRED, _p(now=now)).all()
        for row in rows:
            _requeue(conn, row, now, reason="lease expired: its worker stopped renewing it", outcome="expired",
                     count_attempt=True)
        return len(rows)

    def cancel(self, *, sweep: str | None = None, job_ids: Sequence[int] | None = None) -> int:
        """Pending and running jobs of a sweep and/or with these ids -> cancelled; returns how many.
        Jobs in other states are left as they are."""
        if sweep is None and job_ids is None:
            raise UserError("cancel needs a sweep or job ids")

        def body(conn: Connection) -> int:
            now, n = time.time(), 0
            for ids in _chunks(job_ids):
                where = ([jobs.c.sweep == sweep] if sweep is not None else []) + \
                        ([jobs.c.id.in_(ids)] if ids is not None else [])
                running = select(jobs.c.id).where(jobs.c.status == S.RUNNING.value, *where)
                conn.execute(update(attempts_t).where(attempts_t.c.ended_at.is_(None), attempts_t.c.job_id.in_(running))
                             .values(ended_at=now, outcome=S.CANCELLED.value))
                n += conn.execute(_guarded(S.CANCELLED, *where).values(finished_at=now, lease_until=None)).rowcount
            return n
        return self._write(body)

    def retry(self, *, sweep: str | None = None, statuses: Sequence[JobStatus] = (S.FAILED,)) -> int:
        """Put failed (or diverged, cancelled) jobs back to pending with attempts reset to 0; their old
        results, metrics and arrays are deleted (the attempts history stays). Returns how many."""
        sources = {JobStatus(s) for s in statuses}
        if S.RUNNING in sources:
            raise TransitionError("retry does not take running jobs (a worker holds them): cancel them first")
        stmt = _guarded(S.PENDING, *([jobs.c.sweep == sweep] if sweep is not None else []), sources=sources)
        stmt = stmt.values(attempts=0, error=None, finished_at=None, lease_until=None)
        chosen = select(jobs.c.id).where(jobs.c.status.in_([s.value for s in sources]),
                                         *([jobs.c.sweep == sweep] if sweep is not None else []))

        def body(conn: Connection) -> int:
            for table in (results_t, metrics_t, arrays_t):
                conn.execute(delete(table).where(table.c.job_id.in_(chosen)))
            return conn.execute(stmt).rowcount
        return self._write(body)

    # --- worker registry ------------------------------------------------------------------------
    def register_worker(self, worker: str, *, host: str, pid: int, device: str) -> None:
        params = _p(worker=worker, host=host, pid=pid, device=device, now=time.time())
        self._write(lambda conn: conn.execute(Q_REGISTER, params))

    def worker_seen(self, worker: str, *, job_id: int | None) -> None:
        self._write(lambda conn: conn.execute(Q_SEEN, _p(worker=worker, now=time.time(), current=job_id)))

    def worker_exited(self, worker: str) -> None:
        self._write(lambda conn: conn.execute(Q_EXITED, _p(worker=worker, now=time.time())))

    # --- reading --------------------------------------------------------------------------------
    def sweeps(self) -> list[str]:
        """Sweep names, oldest first."""
        stmt = select(jobs.c.sweep).group_by(jobs.c.sweep).order_by(func.min(jobs.c.id))
        return self._read(lambda conn: list(conn.execute(stmt).scalars()))

    def counts(self, sweep: str | None = None) -> dict[str, dict[str, int]]:
        """{sweep: {status: n}} with every status present (0 where none)."""
        stmt = select(jobs.c.sweep, jobs.c.status, func.count()).group_by(jobs.c.sweep, jobs.c.status)
        if sweep is not None:
            stmt = stmt.where(jobs.c.sweep == sweep)
        out: dict[str, dict[str, int]] = {}
        for name, status, n in self._read(lambda conn: conn.execute(stmt).all()):
            out.setdefault(name, {s.value: 0 for s in JobStatus})[status] = n
        return out

    def device_counts(self, sweep: str | None = None, *, since: float) -> list[dict]:
        """Per device: done, running, and finished_since (done/failed/diverged after `since`)."""
        def n(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
        stmt = (select(jobs.c.device, n(jobs.c.status == S.DONE.value).label("done"),
                       n(jobs.c.status == S.RUNNING.value).label("running"),
                       n(and_(jobs.c.status.in_(FINISHED), jobs.c.finished_at >= since)).label("finished_since"))
                .where(jobs.c.device.is_not(None)).group_by(jobs.c.device).order_by(jobs.c.device))
        if sweep is not None:
            stmt = stmt.where(jobs.c.sweep == sweep)
        return [dict(row._mapping) for row in self._read(lambda conn: conn.execute(stmt).all())]

    def result_rows(self, sweep: str | None = None) -> list[dict]:
        """One dict per job: job_id, sweep, config, status, attempts, summary ({} if none), error, times."""
        stmt = (select(jobs.c.id.label("job_id"), jobs.c.sweep, jobs.c.config, jobs.c.status, jobs.c.attempts,
                       results_t.c.summary, jobs.c.error, jobs.c.created_at, jobs.c.finished_at)
                .select_from(jobs.outerjoin(results_t, results_t.c.job_id == jobs.c.id)).order_by(jobs.c.id))
        if sweep is not None:
            stmt = stmt.where(jobs.c.sweep == sweep)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [{**row._mapping, "config": json.loads(row.config),
                 "summary": json.loads(row.summary) if row.summary else {}} for row in rows]

    def metric_rows(self, sweep: str | None = None, job_ids: Sequence[int] | None = None,
                    names: Sequence[str] | None = None) -> list[tuple[int, int, str, float]]:
        """(job_id, step, name, value) by job, name, step; NaN where the value was NaN."""
        base = select(metrics_t.c.job_id, metrics_t.c.step, metrics_t.c.name, metrics_t.c.value)
        if sweep is not None:
            base = base.join(jobs, jobs.c.id == metrics_t.c.job_id).where(jobs.c.sweep == sweep)
        if names is not None:
            base = base.where(metrics_t.c.name.in_(list(names)))
        base = base.order_by(metrics_t.c.job_id, metrics_t.c.name, metrics_t.c.step)

        def body(conn: Connection) -> list[tuple[int, int, str, float]]:
            out = []
            for ids in _chunks(job_ids):
                stmt = base if ids is None else base.where(metrics_t.c.job_id.in_(ids))
                out += [(j, s, n, float("nan") if v is None else v) for j, s, n, v in conn.execute(stmt)]
            return out
        return self._read(body)

    def array_rows(self, job_id: int, name: str | None = None) -> list[tuple[str, int, bytes]]:
        """(name, step, npy bytes) of one job, by name and step."""
        stmt = (select(arrays_t.c.name, arrays_t.c.step, arrays_t.c.data).where(arrays_t.c.job_id == job_id)
                .order_by(arrays_t.c.name, arrays_t.c.step))
        if name is not None:
            stmt = stmt.where(arrays_t.c.name == name)
        return [(n, s, bytes(d)) for n, s, d in self._read(lambda conn: conn.execute(stmt).all())]

    def attempt_rows(self, job_id: int) -> list[dict]:
        """One job's history, oldest first: attempt (= token), worker, host, device, times, outcome, error."""
        stmt = select(attempts_t).where(attempts_t.c.job_id == job_id).order_by(attempts_t.c.token)
        return [{"attempt": row.token, **row._mapping} for row in self._read(lambda conn: conn.execute(stmt).all())]

    def job_status(self, job_id: int) -> JobStatus:
        status = self._read(lambda conn: conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar())
        if status is None:
            raise UserError(f"no job {job_id} in {self.shown}")
        return JobStatus(status)


def _requeue(conn: Connection, row: Any, now: float, *, reason: str, outcome: str, count_attempt: bool) -> JobStatus:
    """A running job we hold goes back to pending, or to failed when its last counted attempt ended."""
    if count_attempt and row.attempts >= row.max_attempts:
        _move(conn, row.id, S.FAILED, row.token, lease_until=None, finished_at=now, error=reason)
        target = S.FAILED
    elif count_attempt:
        _move(conn, row.id, S.PENDING, row.token, lease_until=None, error=reason)
        target = S.PENDING
    else:  # a graceful stop: this attempt does not count
        _move(conn, row.id, S.PENDING, row.token, lease_until=None, attempts=row.attempts - 1)
        target = S.PENDING
    conn.execute(Q_END_ATTEMPT, _p(job_id=row.id, fence=row.token, now=now, outcome=outcome, error=reason))
    return target
