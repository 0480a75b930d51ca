"""The schema: tables (SQLAlchemy Core), its version and app marker, the checks a database must pass
before it is opened, and the step that creates the schema or migrates an older one (MIGRATIONS)."""
from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

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
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.schema import CreateIndex, CreateTable

from ...errors import UserError
from ..states import JobStatus

if TYPE_CHECKING:
    from .engine import _Tx

SCHEMA_VERSION = 7       # 1: the first schema; 2: workers.version; 3: jobs.fusion_key; 4: the sweeps table;
                         # 5: jobs.signature and jobs.checkpoint_digest; 6: submissions, jobs.submission;
                         # 7: attempts.log and attempts.log_dropped, workers.machine
APP = "runner"

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
    Column("fusion_key", String),  # schema 3: jobs of one sweep with one key may train as one batched model
    Column("signature", String),   # schema 5: HMAC of the config under the submitter's key (runner.signing)
    Column("checkpoint_digest", String),  # schema 5: the digest of the last checkpoint file the job's worker wrote
    Column("submission", Integer),  # schema 6: the submit that added the job (submissions.id)
    UniqueConstraint("sweep", "config_hash"),
    CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in JobStatus)})", name="ck_jobs_status"),
)
Index("ix_jobs_claim", jobs_t.c.status, jobs_t.c.priority.desc(), jobs_t.c.id)
Index("ix_jobs_sweep", jobs_t.c.sweep, jobs_t.c.status, jobs_t.c.priority.desc(), jobs_t.c.id)
ix_jobs_fusion = Index("ix_jobs_fusion", jobs_t.c.fusion_key, jobs_t.c.status, jobs_t.c.priority.desc(), jobs_t.c.id)
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
                   Column("outcome", String), Column("error", Text),
                   # schema 7: the end of what the attempt's code printed (stdout, stderr, warnings, log
                   # records; runner.pool.job_output) and how many bytes before it were dropped
                   Column("log", Text), Column("log_dropped", Integer))
workers_t = Table("workers", metadata, Column("worker", String, primary_key=True), Column("host", String),
                  Column("pid", Integer), Column("device", String), Column("started_at", Float),
                  Column("seen_at", Float), Column("job_id", Integer), Column("exited_at", Float),
                  Column("version", String),  # schema 2: the runner version a worker runs (hosts may differ)
                  Column("machine", String))  # schema 7: the machine (kernel) it runs on: one SQLite file, one machine
# schema 4: per sweep, the keys its grids vary (JSON list, the union over its submits), so that jobs which
# differ in a key no grid varies (a changed base value) are told apart from a grid's axes
# schema 6: one row per submit: the sweep's notes (description, tags), the grid as submitted (its file's
# text, or the dict as JSON, with the command-line overrides) and where it came from (JSON: git commit,
# dirty and a hash of the diff, versions, host, command line)
submissions_t = Table("submissions", metadata, Column("id", Integer, primary_key=True),
                      Column("sweep", String, nullable=False), Column("created_at", Float, nullable=False),
                      Column("description", Text), Column("tags", Text, nullable=False),
                      Column("grid", Text), Column("overrides", Text, nullable=False),
                      Column("provenance", Text, nullable=False))
Index("ix_submissions_sweep", submissions_t.c.sweep, submissions_t.c.id)
sweeps_t = Table("sweeps", metadata, Column("name", String, primary_key=True), Column("axes", Text, nullable=False),
                 Column("created_at", Float, nullable=False))


def _status_in(statuses: Iterable[JobStatus]) -> Any:
    """status = a OR status = b ...: no expanding IN, so the statement compiles once with its constants."""
    return or_(*(jobs_t.c.status == value for value in sorted(JobStatus(s).value for s in statuses)))


# --- checks before opening -------------------------------------------------------------------------
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


def _inspect_sqlite_file(path: str, create: bool, upgrade: bool, timeout_s: float) -> bool:
    """Check, read-only and before anything is written, that path may be opened; True when the
    database still needs our schema (or, upgrading, a migration). timeout_s: SQLite's busy timeout."""
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
            con = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode={mode}", uri=True, timeout=timeout_s)
            try:
                tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                values = dict(con.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{path} is not a readable SQLite database ({exc}): choose another --db") from None
    return _needs_schema(tables, lambda: values, path, create, upgrade)


def _tables(tx: _Tx, shown: str) -> list[str]:
    """Names of the tables in the database (SQLite) or in the current schema (PostgreSQL)."""
    if tx.dialect.name == "sqlite":
        return [r[0] for r in tx.dbapi.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if tx.dbapi.execute("SELECT current_schema()").fetchone()[0] is None:
        raise UserError(f"{shown}: no schema of its search_path exists: create it (CREATE SCHEMA name) "
                        "or name another in options=-csearch_path=name")
    return [r[0] for r in tx.dbapi.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]


def _read_meta(tx: _Tx) -> dict[str, str]:
    return dict(tx.all(select(meta_t.c.key, meta_t.c.value)))


# --- schema versions: MIGRATIONS[v] takes a database from schema v to v + 1, inside the write lock ----
def _to_schema_2(tx: _Tx) -> None:
    """1 -> 2: workers.version, the runner version each worker runs."""
    tx.ddl(f"ALTER TABLE workers ADD COLUMN version {workers_t.c.version.type.compile(dialect=tx.dialect)}")


def _to_schema_3(tx: _Tx) -> None:
    """2 -> 3: jobs.fusion_key and its index. Jobs submitted before have none and are never fused."""
    tx.ddl(f"ALTER TABLE jobs ADD COLUMN fusion_key {jobs_t.c.fusion_key.type.compile(dialect=tx.dialect)}")
    tx.ddl(str(CreateIndex(ix_jobs_fusion).compile(dialect=tx.dialect)))


def _to_schema_4(tx: _Tx) -> None:
    """3 -> 4: the sweeps table. Sweeps submitted before have no row: their axes are unknown, and
    plots and reports treat every key that varies as they did before."""
    tx.ddl(str(CreateTable(sweeps_t).compile(dialect=tx.dialect)))


def _to_schema_5(tx: _Tx) -> None:
    """4 -> 5: jobs.signature and jobs.checkpoint_digest. Jobs submitted before are unsigned (workers
    holding a key refuse them), and a checkpoint written before has no digest: it is not resumed."""
    for column in (jobs_t.c.signature, jobs_t.c.checkpoint_digest):
        tx.ddl(f"ALTER TABLE jobs ADD COLUMN {column.name} {column.type.compile(dialect=tx.dialect)}")


def _to_schema_6(tx: _Tx) -> None:
    """5 -> 6: the submissions table and jobs.submission. Jobs submitted before have no submission:
    no notes, no provenance."""
    tx.ddl(str(CreateTable(submissions_t).compile(dialect=tx.dialect)))
    for index in submissions_t.indexes:
        tx.ddl(str(CreateIndex(index).compile(dialect=tx.dialect)))
    tx.ddl(f"ALTER TABLE jobs ADD COLUMN submission {jobs_t.c.submission.type.compile(dialect=tx.dialect)}")


def _to_schema_7(tx: _Tx) -> None:
    """6 -> 7: attempts.log and attempts.log_dropped (attempts before have no log), workers.machine
    (workers before have none: the one-machine guard of a SQLite queue does not count them)."""
    for table, column in ((attempts_t, attempts_t.c.log), (attempts_t, attempts_t.c.log_dropped),
                          (workers_t, workers_t.c.machine)):
        tx.ddl(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(dialect=tx.dialect)}")


MIGRATIONS: dict[int, Callable[[_Tx], None]] = {1: _to_schema_2, 2: _to_schema_3, 3: _to_schema_4, 4: _to_schema_5,
                                                5: _to_schema_6, 6: _to_schema_7}


def _ensure_schema(tx: _Tx, where: str, upgrade: bool) -> int | None:
    """Create the schema, or migrate an older one when upgrading; returns the version migrated from
    (None when nothing was migrated). Inside the write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
    advisory lock), so two racing submits create the schema once and two upgrades migrate once. DDL
    is transactional on both."""
    if tx.dialect.name != "sqlite":
        tx.ddl("SELECT pg_advisory_xact_lock(hashtext('runner schema ' || current_schema()))")
    tables = _tables(tx, where)
    if "meta" in tables:
        version = _check_meta(_read_meta(tx), where, upgrade)
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](tx)
        if version < SCHEMA_VERSION:
            tx.run(update(meta_t).where(meta_t.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
            return version
        return None
    if tables:
        raise UserError(f"{where} is a database of another program: choose another --db")
    for table in metadata.sorted_tables:
        for ddl in (CreateTable(table), *map(CreateIndex, table.indexes)):
            tx.ddl(str(ddl.compile(dialect=tx.dialect)))
    tx.many(insert(meta_t), ("key", "value"), [("app", APP), ("schema_version", str(SCHEMA_VERSION))])
    return None
