"""Schema versions: a database made by an older runner is refused with a one-line message naming
`runner db upgrade`; that command migrates it, keeping every row, to the schema a fresh database
gets. Runs on SQLite and (marked `postgres`) on PostgreSQL.

The schema-1 database is built by hand from the DDL runner 0.1.0 wrote (frozen here, never
generated from the current code), with rows in every table."""
from __future__ import annotations

import sqlalchemy
from support.databases import sql

import runner
from runner.queue.store import SCHEMA_VERSION, JobOutcome, JobStatus, Store, sqlalchemy_url

# What runner's first schema (version 1) was; {id}, {blob}, {no_rowid} and {key} differ by dialect.
SCHEMA_1 = [
    ("CREATE TABLE jobs (id {id} NOT NULL, sweep VARCHAR NOT NULL, config_hash VARCHAR NOT NULL, config TEXT NOT NULL, "
     "status VARCHAR(16) NOT NULL, priority INTEGER NOT NULL, attempts INTEGER NOT NULL, max_attempts INTEGER NOT NULL, "
     "token INTEGER NOT NULL, worker VARCHAR, host VARCHAR, device VARCHAR, lease_until FLOAT, created_at FLOAT NOT NULL, "
     "started_at FLOAT, finished_at FLOAT, error TEXT, PRIMARY KEY (id), UNIQUE (sweep, config_hash), "
     "CONSTRAINT ck_jobs_status CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged', 'cancelled')))"),
    "CREATE INDEX ix_jobs_sweep ON jobs (sweep, status, priority DESC, id)",
    "CREATE INDEX ix_jobs_claim ON jobs (status, priority DESC, id)",
    "CREATE TABLE meta ({key} VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY ({key}))",
    ("CREATE TABLE workers (worker VARCHAR NOT NULL, host VARCHAR, pid INTEGER, device VARCHAR, started_at FLOAT, "
     "seen_at FLOAT, job_id INTEGER, exited_at FLOAT, PRIMARY KEY (worker))"),
    ("CREATE TABLE arrays (job_id INTEGER NOT NULL, name VARCHAR NOT NULL, step INTEGER NOT NULL, data {blob} NOT NULL, "
     "PRIMARY KEY (job_id, name, step), FOREIGN KEY(job_id) REFERENCES jobs (id))"),
    ("CREATE TABLE attempts (job_id INTEGER NOT NULL, token INTEGER NOT NULL, worker VARCHAR, host VARCHAR, "
     "device VARCHAR, started_at FLOAT, ended_at FLOAT, outcome VARCHAR, error TEXT, PRIMARY KEY (job_id, token), "
     "FOREIGN KEY(job_id) REFERENCES jobs (id))"),
    ("CREATE TABLE metrics (job_id INTEGER NOT NULL, name VARCHAR NOT NULL, step INTEGER NOT NULL, value FLOAT, "
     "PRIMARY KEY (job_id, name, step), FOREIGN KEY(job_id) REFERENCES jobs (id)) {no_rowid}"),
    ("CREATE TABLE results (job_id INTEGER NOT NULL, summary TEXT NOT NULL, PRIMARY KEY (job_id), "
     "FOREIGN KEY(job_id) REFERENCES jobs (id))"),
]
DIALECT = {"sqlite": {"id": "INTEGER", "blob": "BLOB", "no_rowid": "WITHOUT ROWID", "key": '"key"'},
           "postgresql": {"id": "SERIAL", "blob": "BYTEA", "no_rowid": "", "key": "key"}}
ROWS = [
    "INSERT INTO meta VALUES ('app', 'runner'), ('schema_version', '1')",
    ("INSERT INTO jobs (sweep, config_hash, config, status, priority, attempts, max_attempts, token, worker, host, "
     "device, created_at, started_at, finished_at) VALUES "
     "('old', 'h1', '{\"lr\": 0.1}', 'done', 0, 1, 3, 1, 'w1', 'host-a', 'cpu', 1.0, 2.0, 3.0), "
     "('old', 'h2', '{\"lr\": 0.2}', 'pending', 0, 0, 3, 0, NULL, NULL, NULL, 1.0, NULL, NULL)"),
    "INSERT INTO results VALUES (1, '{\"final_train_loss\": 0.5}')",
    "INSERT INTO metrics VALUES (1, 'train_loss', 0, 1.0), (1, 'train_loss', 10, 0.5)",
    "INSERT INTO attempts VALUES (1, 1, 'w1', 'host-a', 'cpu', 2.0, 3.0, 'done', NULL)",
    "INSERT INTO workers VALUES ('w1', 'host-a', 11, 'cpu', 1.0, 3.0, NULL, 4.0)",
]
BLOB = b"\x93NUMPY\x01\x00fake npy bytes \x00\xff"


# What each migration did, written by hand (as the runner of that version left the database).
_STEPS = {
    2: ["ALTER TABLE workers ADD COLUMN version VARCHAR"],
    3: ["ALTER TABLE jobs ADD COLUMN fusion_key VARCHAR",
        "CREATE INDEX ix_jobs_fusion ON jobs (fusion_key, status, priority DESC, id)"],
    4: ["CREATE TABLE sweeps (name VARCHAR NOT NULL, axes TEXT NOT NULL, created_at FLOAT NOT NULL, PRIMARY KEY (name))"],
    5: ["ALTER TABLE jobs ADD COLUMN signature VARCHAR", "ALTER TABLE jobs ADD COLUMN checkpoint_digest VARCHAR"],
    6: ["CREATE TABLE submissions (id {id} NOT NULL, sweep VARCHAR NOT NULL, created_at FLOAT NOT NULL, "
        "description TEXT, tags TEXT NOT NULL, grid TEXT, overrides TEXT NOT NULL, provenance TEXT NOT NULL, "
        "PRIMARY KEY (id))",
        "CREATE INDEX ix_submissions_sweep ON submissions (sweep, id)",
        "ALTER TABLE jobs ADD COLUMN submission INTEGER"],
}


def _build_schema(url: str, backend: str, version: int) -> None:
    """A database as a runner of schema `version` made it: schema 1, then each later step's DDL."""
    _build_schema_1(url, backend)
    for step in range(2, version + 1):
        for statement in _STEPS[step]:
            sql(url, statement.format(**DIALECT[backend]))
    sql(url, "UPDATE meta SET value = :v WHERE key = 'schema_version'", {"v": str(version)})


def _upgraded_from(version: int, url: str, new_url, backend: str, run_cli) -> None:
    """A schema-`version` database, upgraded by `runner db upgrade`: it says so, and its schema is the
    one a fresh database gets."""
    _build_schema(url, backend, version)
    out = run_cli("db", "upgrade", "--db", url)
    assert out.returncode == 0 and out.stdout.strip().endswith(f"from schema {version} to {SCHEMA_VERSION}"), out.stderr
    fresh = new_url()
    Store(fresh, create=True).close()
    assert _schema(url) == _schema(fresh)


def _build_schema_1(url: str, backend: str) -> None:
    for statement in [s.format(**DIALECT[backend]) for s in SCHEMA_1] + ROWS:
        sql(url, statement)
    sql(url, "INSERT INTO arrays VALUES (1, 'w', 10, :data)", {"data": BLOB})


def _schema(url: str) -> dict:
    """Tables -> columns (name, type, nullable, default-less), primary key, indexes, uniques, foreign keys."""
    target = sqlalchemy.engine.make_url(sqlalchemy_url(url))
    if target.drivername == "postgresql":
        target = target.set(drivername="postgresql+psycopg")
    engine = sqlalchemy.create_engine(target, poolclass=sqlalchemy.pool.NullPool)
    try:
        inspector = sqlalchemy.inspect(engine)
        schema = inspector.default_schema_name
        return {table: {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table, schema)],
            "pk": inspector.get_pk_constraint(table, schema)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table, schema)),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table, schema)),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"])
                          for f in inspector.get_foreign_keys(table, schema)),
        } for table in sorted(inspector.get_table_names(schema))}
    finally:
        engine.dispose()


def test_runner_db_upgrade_migrates_a_schema_1_database(url, new_url, backend, run_cli):
    assert SCHEMA_VERSION == 7  # a new version needs its own migration test beside this one
    _build_schema_1(url, backend)
    refused = run_cli("status", "--db", url)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "older runner (schema 1 < 7): run `runner db upgrade`" in refused.stderr

    out = run_cli("db", "upgrade", "--db", url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("upgraded ") and out.stdout.strip().endswith("from schema 1 to 7")
    again = run_cli("db", "upgrade", "--db", url)
    assert again.returncode == 0 and "at schema 7 already: nothing to do" in again.stdout

    fresh = new_url()
    Store(fresh, create=True).close()
    assert _schema(url) == _schema(fresh)  # the migrated schema is the one a new database gets
    assert dict(sql(url, "SELECT key, value FROM meta")) == {"app": "runner", "schema_version": "7"}

    with Store(url) as store:  # every old row is there, and the queue works on
        (done, pending) = store.result_rows("old")
        assert (done["status"], done["summary"], done["config"]) == ("done", {"final_train_loss": 0.5}, {"lr": 0.1})
        assert store.metric_rows("old") == [(1, 0, "train_loss", 1.0), (1, 10, "train_loss", 0.5)]
        assert store.array_rows(1) == [("w", 10, BLOB)]
        assert [a["outcome"] for a in store.attempt_rows(1)] == ["done"]
        job = store.claim("w2", host="host-b", device="cpu")
        assert job is not None and job.id == pending["job_id"] and job.token == 1
        store.finish(job.id, job.token, JobOutcome(JobStatus.DONE, {"final_train_loss": 0.25}))
        store.register_worker("w2", host="host-b", pid=12, device="cpu")
        versions = {w["worker"]: w["version"] for w in store.worker_rows()}
        assert versions["w1"] is None and versions["w2"] == __import__("runner").__version__
        assert store.counts("old")["old"]["done"] == 2


def test_runner_db_upgrade_gives_a_schema_2_database_fusion_keys(url, new_url, backend, run_cli, tmp_path):
    """2 -> 3: jobs.fusion_key and its index; old jobs keep no key (never fused) and still run."""
    _build_schema(url, backend, 2)
    refused = run_cli("status", "--db", url)
    assert refused.returncode == 2 and "older runner (schema 2 < 7): run `runner db upgrade`" in refused.stderr
    out = run_cli("db", "upgrade", "--db", url)
    assert out.returncode == 0 and out.stdout.strip().endswith("from schema 2 to 7"), out.stderr
    fresh = new_url()
    Store(fresh, create=True).close()
    assert _schema(url) == _schema(fresh)
    assert sql(url, "SELECT id, fusion_key FROM jobs ORDER BY id") == [(1, None), (2, None)]
    grid = tmp_path / "g.yaml"
    grid.write_text("sweep: new\nbatchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8}\n"
                    "grid: {seed: [0, 1]}\n")
    assert run_cli("submit", str(grid), "--db", url).returncode == 0
    keys = sql(url, "SELECT fusion_key FROM jobs WHERE sweep = 'new'")
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0][0]) == 32  # seeds differ only in values
    with Store(url) as store:
        job = store.claim("w", host="h", device="cpu", sweep="old")
        assert job is not None and job.id == 2


def test_runner_db_upgrade_refuses_what_it_cannot_upgrade(url, run_cli):
    missing = run_cli("db", "upgrade", "--db", url)
    assert missing.returncode == 2 and "no runner database" in missing.stderr
    Store(url, create=True).close()
    sql(url, "UPDATE meta SET value = :v WHERE key = 'schema_version'", {"v": str(SCHEMA_VERSION + 1)})
    newer = run_cli("db", "upgrade", "--db", url)
    assert newer.returncode == 2 and len(newer.stderr.strip().splitlines()) == 1
    assert f"newer runner (schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION}): upgrade runner" in newer.stderr


def test_every_older_schema_has_a_migration():
    from runner.queue.store import MIGRATIONS

    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def test_runner_db_upgrade_gives_a_schema_3_database_the_sweeps_table(url, new_url, backend, run_cli, tmp_path):
    """3 -> 4: the sweeps table. A sweep submitted before has no row (its axes are unknown: nothing is
    drawn apart); the next submit to it records its grid's axes."""
    _upgraded_from(3, url, new_url, backend, run_cli)
    assert sql(url, "SELECT name FROM sweeps") == []
    with Store(url) as store:
        assert store.sweep_axes("old") is None
    grid = tmp_path / "g.yaml"
    grid.write_text("sweep: old\nbatchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8}\n"
                    "grid: {lr: [0.1, 0.3]}\n")
    assert run_cli("submit", str(grid), "--db", url).returncode == 0
    with Store(url) as store:
        assert store.sweep_axes("old") == ["lr"]


def test_runner_db_upgrade_gives_a_schema_4_database_signatures_and_checkpoint_digests(url, new_url, backend, run_cli):
    """4 -> 5: jobs.signature and jobs.checkpoint_digest. Old jobs are unsigned: workers without a key
    run them, workers holding one refuse them (they were never signed)."""
    _upgraded_from(4, url, new_url, backend, run_cli)
    assert sql(url, "SELECT id, signature, checkpoint_digest FROM jobs ORDER BY id") == [(1, None, None), (2, None, None)]
    with Store(url) as store:
        job = store.claim("w", host="h", device="cpu")
        assert job is not None and job.signature is None and job.checkpoint_digest is None
        assert store.record_checkpoints([(job.id, job.token, "sha256:00")]) == set()
    assert sql(url, f"SELECT checkpoint_digest FROM jobs WHERE id = {job.id}") == [("sha256:00",)]


def test_runner_db_upgrade_gives_a_schema_5_database_submissions(url, new_url, backend, run_cli, tmp_path):
    """5 -> 6: the submissions table and jobs.submission. Old jobs have no submit record (no notes, no
    provenance: `runner show` says so); a new submit to the old sweep records one for its new jobs."""
    _upgraded_from(5, url, new_url, backend, run_cli)
    assert sql(url, "SELECT id, submission FROM jobs ORDER BY id") == [(1, None), (2, None)]
    shown = run_cli("show", "1", "--db", url)
    assert shown.returncode == 0 and "submitted: no record (before runner kept provenance)" in shown.stdout
    grid = tmp_path / "more.yaml"
    grid.write_text("sweep: old\ndescription: two more\nbase: {batchfn: gaussian_teacher, model: mlp, d: 4, "
                    "batch_size: 8, steps: 5}\ngrid: {lr: [0.3, 0.4]}\n")
    assert run_cli("submit", str(grid), "--db", url).returncode == 0
    assert sql(url, "SELECT id, submission FROM jobs ORDER BY id") == [(1, None), (2, None), (3, 1), (4, 1)]
    frame = runner.results(url)
    assert frame["submit_command"].isna().tolist() == [True, True, False, False]


def test_runner_db_upgrade_gives_a_schema_6_database_logs_and_machines(url, new_url, backend, run_cli):
    """6 -> 7: attempts.log and attempts.log_dropped, workers.machine. Old attempts have no log
    (`runner logs` says so); old workers have no machine, so the one-machine guard of a SQLite queue
    does not count them; new attempts and workers get both."""
    _upgraded_from(6, url, new_url, backend, run_cli)
    assert sql(url, "SELECT job_id, log, log_dropped FROM attempts") == [(1, None, None)]
    old = run_cli("logs", "1", "--db", url)
    assert old.returncode == 0 and "no log (its attempts kept none" in old.stdout
    with Store(url) as store:
        assert store.workers_elsewhere("boot:here", 10**9) == []  # w1 has no machine
        job = store.claim("w2", host="h", device="cpu")
        assert job is not None
        store.finish(job.id, job.token, JobOutcome(JobStatus.DONE, {}, log="said\n", log_dropped=3))
        store.register_worker("w2", host="h", pid=2, device="cpu", machine="boot:there")
        assert [w["worker"] for w in store.workers_elsewhere("boot:here", 10**9)] == ["w2"]
    assert sql(url, f"SELECT log, log_dropped FROM attempts WHERE job_id = {job.id}") == [("said\n", 3)]
