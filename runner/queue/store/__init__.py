"""The job queue and everything it stores: the only package that holds SQL (SQLAlchemy 2 Core).

Jobs move through one table of allowed transitions (TRANSITIONS); every move is one guarded
UPDATE (`... WHERE status IN (allowed sources)`) whose row count is checked. Workers claim a job
atomically, renew its lease with heartbeats and write back with their fencing token; a stale token
is refused. SQLite is the embedded backend: WAL, a long busy timeout, `BEGIN IMMEDIATE` for every
write transaction, and a bounded retry for the rare immediate "database is locked". PostgreSQL
(psycopg 3) is the backend for several hosts: the same schema and statements, READ COMMITTED
transactions, `FOR UPDATE SKIP LOCKED` where a claim or a reap picks rows, and the same bounded
retry for serialization failures, deadlocks, lock timeouts and a lost connection.

Split along its seams: schema (tables, version, MIGRATIONS: `runner db upgrade` takes an older
database forward, a newer one is refused), engine (URLs, opening, statements compiled once per
dialect and run on the pooled DBAPI connection, the one transaction/retry/error path), jobs (the
transition table, guarded moves, named statements, the queue operations) and reads (every reader).
Store is the one entry: Database (engine) <- Reads (reads) <- JobOps (jobs) <- Store.
"""
from __future__ import annotations

from ...errors import StaleTokenError, StoreError, TransitionError
from ..states import AttemptOutcome, JobStatus
from .engine import display_url, sqlalchemy_url, sqlite_file
from .jobs import TRANSITIONS, ClaimedJob, JobOps, JobOutcome
from .schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "AttemptOutcome",
    "ClaimedJob",
    "JobOutcome",
    "JobStatus",
    "StaleTokenError",
    "Store",
    "StoreError",
    "TransitionError",
    "display_url",
    "sqlalchemy_url",
    "sqlite_file",
]


class Store(JobOps):
    """One process's handle on the queue. Thread-safe: each call takes its own pooled connection.
    Never pickled: a child process opens its own Store from the URL string.

    upgrade=True migrates a database of an older schema (`runner db upgrade`) instead of refusing it;
    `upgraded_from` then holds the version it had. autocheckpoint=False (SQLite): this process's
    commits never copy the write-ahead log back into the file; another process calls
    `checkpoint_wal()` (the supervisor does, for its workers), so no claim pays for it."""
