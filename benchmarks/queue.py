"""Queue benchmark (docs/contracts.md, "Performance targets"): no-op jobs through the job queue, SQLite or PostgreSQL.

1. submit: one `Store.add_jobs` call of 100,000 distinct job configs into a fresh database, as
   `runner submit` does for a one-group grid (target: < 5 s);
2. drain: for each worker count W (1, 2, 4), a fresh queue of N no-op jobs is drained by W
   processes (multiprocessing 'spawn') that loop claim -> finish(DONE, small summary) until claim
   returns None (target: >= 1,000 jobs/s with 4 workers on a 2-core machine). The clock starts when
   every process is up and has its Store open (start-up is reported apart) and stops when the last
   process saw an empty queue. Each process times every claim() call (claim latency p50/p99).
   Afterwards every job is checked to be done exactly once (one claim, one attempt, one result).

Ratios of the drain rows are against the W=1 row of the same run.

    python benchmarks/queue.py [--jobs 100000] [--drain-jobs N] [--workers 1,2,4] [--db PATH] [--quick]
    python benchmarks/queue.py --db postgresql+psycopg://user@host/dbname [--workers 1,4,8] [--no-sqlite]

--db: the database of the submit row (a file path or sqlite:/// URL; default: a file in a temporary
folder, removed afterwards); the drain rows use fresh files beside it (NAME.drain-wW.db).
With a PostgreSQL URL every row gets a fresh schema of that database (runner_bench_<pid>_<row>,
through the URL's search_path; dropped afterwards), the drain rows default to 1, 4 and 8
workers, and the same rows are run on a temporary SQLite file too (unless --no-sqlite), so the
two backends are printed side by side from one run. The queue is measured through the public API
of runner.queue.store.Store only; the schemas are made and dropped with SQLAlchemy.
"""
from __future__ import annotations

import os
import sys

# This file is named queue.py, and Python puts its folder first on sys.path: that folder must go,
# or `import queue` (multiprocessing, SQLAlchemy's pool) would import this script instead of the
# standard library's module. The repository root goes there instead, so `runner` imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse
import cProfile
import datetime
import io
import multiprocessing
import platform
import pstats
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from queue import Empty  # the standard library's: this folder is off sys.path

import numpy as np
import sqlalchemy
from sqlalchemy.engine import make_url

from benchmarks.synthetic import git_rev, machine
from runner.errors import RunnerError
from runner.hashing import config_hash
from runner.queue.store import JobOutcome, JobStatus, Store, display_url, sqlalchemy_url

ADD_TARGET_S, ADD_TARGET_JOBS = 5.0, 100_000  # submitting 100,000 jobs (no target for other sizes)
DRAIN_TARGET_JOBS_S = 1000  # no-op jobs/s with 4 worker processes on a 2-core machine
TARGET_WORKERS = 4
QUICK = {"jobs": 2_000, "drain_jobs": 300, "workers": "1,2"}
FULL = {"jobs": 100_000, "drain_jobs": 20_000, "workers": "1,2,4"}
FULL_PG_WORKERS = "1,4,8"
WAIT_S = 900                # a drain that takes longer than this has hung


def make_jobs(n: int, offset: int = 0) -> list[tuple[str, dict]]:
    """n distinct job configs shaped like a validated grid cell (12 keys), distinct by seed and lr."""
    jobs = []
    for i in range(offset, offset + n):
        config = {"model": "mlp", "batchfn": "gaussian_teacher", "d": 32, "k": 4, "depth": 2 + i % 3,
                  "width": 64 << (i % 4), "optimizer": "sgd", "momentum": 0.9, "batch_size": 128,
                  "steps": 600, "lr": round(0.001 * (1 + i % 10), 6), "seed": i}
        jobs.append((config_hash(config), config))
    return jobs


# --- a drain worker (runs in a spawned process) ------------------------------------------------------
def drain_worker(url: str, name: str, go, results, profile_path: str | None, autocheckpoint: bool = False) -> None:
    """Open a Store, say ready, wait for go, then claim -> finish until the queue is empty; send back
    (name, claimed ids, claim durations, finish durations, end time). Like runner's workers, it
    leaves WAL checkpoints to the parent unless autocheckpoint (SQLite's own, in some commit)."""
    try:
        store = Store(url, autocheckpoint=autocheckpoint)
        store.sweeps()  # opens the pooled connection (and its pragmas) before the clock starts
        host, outcome = socket.gethostname(), JobOutcome(JobStatus.DONE, {"final_train_loss": 0.5, "worker": name})
        ids: list[int] = []
        claim_s: list[float] = []
        finish_s: list[float] = []
        results.put(("ready", name))
        go.wait()
        profiler = cProfile.Profile() if profile_path else None
        if profiler:
            profiler.enable()
        clock = time.perf_counter
        while True:
            t0 = clock()
            job = store.claim(name, host=host, device="cpu")
            t1 = clock()
            claim_s.append(t1 - t0)
            if job is None:
                break
            store.finish(job.id, job.token, outcome)
            finish_s.append(clock() - t1)
            ids.append(job.id)
        end = clock()
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_path)
        store.close()
        results.put(("done", name, np.asarray(ids, dtype=np.int64), np.asarray(claim_s), np.asarray(finish_s), end))
    except BaseException:
        results.put(("error", name, traceback.format_exc()))
        raise


# --- the rows --------------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    jobs: int
    seconds: float
    workers: int = 0                    # 0: the submit row
    claim_ms: np.ndarray | None = None  # per claim() call, all workers together
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")


def bench_add(url: str, n: int) -> Row:
    t0 = time.perf_counter()
    jobs = make_jobs(n)
    hashing = time.perf_counter() - t0
    with Store(url, create=True) as store:
        t0 = time.perf_counter()
        added, existing = store.add_jobs("bench-add", jobs)
        took = time.perf_counter() - t0
        if (added, existing) != (n, 0):
            raise SystemExit(f"add_jobs added {added} and found {existing} already there, expected {n} and 0")
        t0 = time.perf_counter()
        again = store.add_jobs("bench-add", jobs)
        again_s = time.perf_counter() - t0
        pending = store.counts("bench-add")["bench-add"]["pending"]
    if again != (0, n) or pending != n:
        raise SystemExit(f"the second add_jobs gave {again}, {pending} pending: expected (0, {n}), {n}")
    row = Row(f"add {n:,}", n, took)
    row.notes.append(f"building {n:,} configs and their config_hash: {hashing:.2f} s (not in the row); "
                     f"the same add_jobs again (all already there): {again_s:.2f} s; {pending:,} pending")
    return row


def bench_drain(url: str, n: int, workers: int, profile_path: str | None, wal_auto: bool = False) -> Row:
    """Drain n no-op jobs with `workers` processes; the parent checkpoints the WAL every 0.5 s as
    runner's supervisor does (wal_auto: the workers' commits do it instead, SQLite's default)."""
    with Store(url, create=True) as store:
        t0 = time.perf_counter()
        store.add_jobs("bench-drain", make_jobs(n))
        fill = time.perf_counter() - t0
    checkpointer = Store(url)
    stop = threading.Event()
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    names = [f"bench-w{i}" for i in range(workers)]
    procs = [ctx.Process(target=drain_worker, args=(url, name, go, results, profile_path if i == 0 else None, wal_auto),
                         name=name) for i, name in enumerate(names)]
    spawned = time.perf_counter()
    for p in procs:
        p.start()
    try:
        ready = 0
        while ready < workers:
            msg = _get(results, procs)
            if msg[0] == "error":
                raise SystemExit(f"worker {msg[1]} failed before the start:\n{msg[2]}")
            ready += 1
        start = time.perf_counter()
        startup = start - spawned
        if not wal_auto:
            threading.Thread(target=_checkpoint_every, args=(checkpointer, stop, 0.5), daemon=True).start()
        go.set()
        done = []
        while len(done) < workers:
            msg = _get(results, procs)
            if msg[0] == "error":
                raise SystemExit(f"worker {msg[1]} failed:\n{msg[2]}")
            done.append(msg)
    finally:
        go.set()
        stop.set()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        checkpointer.close()
    wall = max(m[5] for m in done) - start
    ids = np.concatenate([m[2] for m in done])
    claim_ms = np.concatenate([m[3] for m in done]) * 1e3
    finish_ms = np.concatenate([m[4] for m in done]) * 1e3
    row = Row(f"drain W={workers}" + (" WAL auto" if wal_auto else ""), n, wall, workers, claim_ms)
    per_worker = ", ".join(f"{len(m[2]):,}" for m in sorted(done, key=lambda m: m[1]))
    row.notes.append(f"start-up of {workers} process(es) until all ready: {startup:.2f} s (not in the row); "
                     f"filling the queue: {fill:.2f} s; jobs per worker: {per_worker}; "
                     f"finish p50 {np.percentile(finish_ms, 50):.2f} ms, p99 {np.percentile(finish_ms, 99):.2f} ms")
    row.notes.append(check_exactly_once(url, ids, n, {m[1]: set(m[2].tolist()) for m in done}))
    return row


def _checkpoint_every(store: Store, stop: threading.Event, seconds: float) -> None:
    """What runner's supervisor does for its workers: a passive WAL checkpoint every so often."""
    while not stop.wait(seconds):
        store.checkpoint_wal()


def _get(results, procs):
    """The next message from the workers; fails when a worker died without sending one."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=1.0)
        except Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"worker {dead[0].name} died with exit code {dead[0].exitcode}") from None
    raise SystemExit(f"no word from the workers in {WAIT_S} s")


def check_exactly_once(url: str, ids: np.ndarray, n: int, by_worker: dict[str, set[int]]) -> str:
    """Every job done exactly once: claimed once in all (by the workers' own lists), done, one
    attempt, its one result written by the worker that claimed it."""
    with Store(url) as store:
        counts = store.counts("bench-drain")["bench-drain"]
        rows = store.result_rows("bench-drain")
        sample = [store.attempt_rows(r["job_id"]) for r in rows[:: max(1, len(rows) // 50)]]
    all_ids = {r["job_id"] for r in rows}
    problems = []
    if len(ids) != n or len(set(ids.tolist())) != n or set(ids.tolist()) != all_ids:
        problems.append(f"claims: {len(ids)} ({len(set(ids.tolist()))} distinct) for {len(all_ids)} jobs")
    if counts["done"] != n or sum(counts.values()) != n:
        problems.append(f"statuses {counts}")
    if {r["attempts"] for r in rows} != {1}:
        problems.append(f"attempts per job {sorted({r['attempts'] for r in rows})}")
    wrong = [r["job_id"] for r in rows if r["job_id"] not in by_worker.get(r["summary"].get("worker"), ())]
    if wrong:
        problems.append(f"{len(wrong)} results not from the worker that claimed the job")
    if any([(a["token"], a["outcome"]) for a in history] != [(1, "done")] for history in sample):
        problems.append("an attempt history other than one done attempt")
    if problems:
        raise SystemExit("exactly-once check FAILED: " + "; ".join(problems))
    return (f"exactly once: OK ({n:,} claims by the workers, {len(all_ids):,} distinct; {counts['done']:,} done, "
            f"0 in other states; every job attempts=1 and its result from its claimer; "
            f"{len(sample)} attempt histories read: one done attempt each)")


# --- output ----------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def header(db_shown: str, server: str | None = None) -> str:
    return (f"queue benchmark {datetime.datetime.now().isoformat(timespec='seconds')}; "
            f"{machine(_cpu_model())}, SQLAlchemy {sqlalchemy.__version__}, "
            f"SQLite {sqlite3.sqlite_version}{'; ' + server if server else ''}; git {git_rev()}; db {db_shown}")


def table(rows: list[Row], targets: bool = True) -> str:
    """The rows as a table; targets: mark the SQLite targets of docs/contracts.md (not set for PostgreSQL)."""
    base = next((r for r in rows if r.workers == 1), None)
    cols = ("", "jobs", "seconds", "jobs/s", "vs W=1", "claim p50 ms", "claim p99 ms", "target", "met?")
    lines = []
    for r in rows:
        if not targets:
            target, met = "-", None
        elif r.workers == 0 and r.jobs == ADD_TARGET_JOBS:
            target, met = f"< {ADD_TARGET_S:g} s", r.seconds < ADD_TARGET_S
        elif r.workers == TARGET_WORKERS:
            target, met = f">= {DRAIN_TARGET_JOBS_S:,} jobs/s", r.rate >= DRAIN_TARGET_JOBS_S
        else:
            target, met = "-", None
        ratio = f"{r.rate / base.rate:.2f}x" if r.workers and base is not None else "-"
        p50, p99 = ((f"{np.percentile(r.claim_ms, 50):.3f}", f"{np.percentile(r.claim_ms, 99):.3f}")
                    if r.claim_ms is not None else ("-", "-"))
        lines.append((r.label, f"{r.jobs:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}", ratio, p50, p99, target,
                      "-" if met is None else ("yes" if met else "NO")))
    widths = [max(len(str(x[i])) for x in [cols, *lines]) for i in range(len(cols))]

    def fmt(cells) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [fmt(cols), fmt(["-" * w for w in widths]), *map(fmt, lines)]
    return "\n".join(out)


def side_by_side(sqlite_rows: list[Row], pg_rows: list[Row]) -> str:
    """Drain jobs/s of the two backends per worker count, from the same run."""
    lite = {r.workers: r for r in sqlite_rows if r.workers}
    lines = [f"{'workers':>7}  {'SQLite jobs/s':>13}  {'PostgreSQL jobs/s':>17}  {'PostgreSQL/SQLite':>17}",
             f"{'-' * 7}  {'-' * 13}  {'-' * 17}  {'-' * 17}"]
    for r in (r for r in pg_rows if r.workers):
        other = lite.get(r.workers)
        lines.append(f"{r.workers:>7}  {f'{other.rate:,.0f}' if other else '-':>13}  {r.rate:>17,.0f}  "
                     f"{f'{r.rate / other.rate:.2f}x' if other else '-':>17}")
    return "\n".join(lines)


class PgSchemas:
    """Fresh schemas of one PostgreSQL database, one per row (through the URL's search_path), dropped
    at the end: each row starts from an empty queue, as with a fresh SQLite file."""

    def __init__(self, base: str) -> None:
        url = make_url(base)
        self.url = url.set(drivername="postgresql+psycopg") if url.drivername == "postgresql" else url
        self.engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
        self.made: list[str] = []

    def server(self) -> str:
        import psycopg

        with self.engine.connect() as con:
            version = con.execute(sqlalchemy.text("SHOW server_version")).scalar()
        return f"PostgreSQL {version.split()[0]} (psycopg {psycopg.__version__})"

    def new(self, tag: str) -> str:
        name = f"runner_bench_{os.getpid()}_{tag}".replace("-", "_").replace(",", "")
        with self.engine.begin() as con:
            con.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            con.execute(sqlalchemy.text(f'CREATE SCHEMA "{name}"'))
        self.made.append(name)
        options = " ".join(filter(None, [self.url.query.get("options", ""), f"-csearch_path={name}"]))
        return self.url.update_query_dict({"options": options}).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.engine.begin() as con:
            for name in self.made:
                con.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        self.engine.dispose()


def _is_postgres(db: str | None) -> bool:
    return db is not None and "://" in db and make_url(db).get_backend_name() == "postgresql"


def _row_url(base: str, tag: str | None, pg: PgSchemas | None = None) -> str:
    """The database of one row: base itself, or a fresh file beside it (NAME.TAG.db); on PostgreSQL
    a fresh schema."""
    if pg is not None:
        return pg.new(tag or "add")
    url = make_url(sqlalchemy_url(base))
    if not url.drivername.startswith("sqlite") or not url.database:
        return url.render_as_string(hide_password=False)  # the Store says what it cannot use
    stem, ext = os.path.splitext(url.database)
    path = url.database if tag is None else f"{stem}.{tag}{ext or '.db'}"
    if os.path.exists(path):
        raise SystemExit(f"{path} exists: every row needs a fresh database, pass a new --db")
    return url.set(database=path).render_as_string(hide_password=False)


def run_rows(base: str, n_add: int, n_drain: int, workers: list[int], profile: str | None,
             pg: PgSchemas | None = None, compare_wal: bool = False) -> list[Row]:
    """The submit row, then one drain row per worker count, each on a fresh database (with
    compare_wal, SQLite: each also with SQLite's automatic WAL checkpoints, runner's old way)."""
    rows = [bench_add(_row_url(base, None, pg), n_add)]
    print(f"  {rows[-1].label}: {rows[-1].seconds:.2f} s", flush=True)
    for w in workers:
        for wal_auto in ((False, True) if compare_wal and pg is None else (False,)):
            name = f"drain-w{w}" + ("-walauto" if wal_auto else "")
            rows.append(bench_drain(_row_url(base, name, pg), n_drain, w, profile if w == 1 else None, wal_auto))
            print(f"  {rows[-1].label}: {rows[-1].jobs:,} jobs in {rows[-1].seconds:.2f} s"
                  + (" (profiled: slower than unprofiled)" if profile and w == 1 else ""), flush=True)
    return rows


def print_notes(rows: list[Row], prefix: str = "") -> None:
    for r in rows:
        for note in r.notes:
            print(f"{prefix}{r.label}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help=f"jobs in the submit row (default {FULL['jobs']:,})")
    parser.add_argument("--drain-jobs", type=int, help=f"jobs per drain row (default {FULL['drain_jobs']:,})")
    parser.add_argument("--workers", help=f"worker counts of the drain rows (default {FULL['workers']}; "
                                          f"{FULL_PG_WORKERS} with a PostgreSQL --db)")
    parser.add_argument("--db", help="database of the submit row, a path or URL (default: a temporary file); "
                                     "a postgresql+psycopg:// URL benchmarks PostgreSQL beside SQLite")
    parser.add_argument("--no-sqlite", action="store_true",
                        help="with a PostgreSQL --db: skip the SQLite rows printed beside it")
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny sizes for a smoke test: {QUICK['jobs']:,} added, {QUICK['drain_jobs']} "
                             f"drained by {QUICK['workers']} workers")
    parser.add_argument("--compare-wal", action="store_true",
                        help="SQLite: run each drain row also with SQLite's automatic WAL checkpoints in the workers")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the W=1 drain's worker under cProfile, write its stats to FILE and print the top")
    args = parser.parse_args(argv)
    try:
        postgres = _is_postgres(args.db)
    except sqlalchemy.exc.ArgumentError:
        postgres = False  # the Store says what is wrong with the URL
    sizes = QUICK if args.quick else FULL
    n_add = args.jobs if args.jobs is not None else sizes["jobs"]
    n_drain = args.drain_jobs if args.drain_jobs is not None else sizes["drain_jobs"]
    default_workers = FULL_PG_WORKERS if postgres and not args.quick else sizes["workers"]
    workers = [int(w) for w in (args.workers or default_workers).split(",") if w.strip()]
    if n_add < 1 or n_drain < 1 or not workers or min(workers) < 1:
        parser.error("--jobs, --drain-jobs and every --workers count must be at least 1")
    if args.profile and 1 not in workers:
        parser.error("--profile profiles the W=1 row: --workers must include 1")

    tmp = tempfile.mkdtemp(prefix="runner-queue-bench-") if args.db is None or postgres else None
    base = os.path.join(tmp, "queue.db") if args.db is None else args.db
    pg: PgSchemas | None = None
    try:
        if not postgres:
            print(header(display_url(base)), flush=True)
            rows = run_rows(base, n_add, n_drain, workers, args.profile, compare_wal=args.compare_wal)
            print()
            print(table(rows))
            print()
            print_notes(rows)
        else:
            pg = PgSchemas(args.db)
            print(header(display_url(args.db), pg.server()), flush=True)
            print("PostgreSQL (a fresh schema per row):", flush=True)
            pg_rows = run_rows(args.db, n_add, n_drain, workers, args.profile, pg)
            lite_rows: list[Row] = []
            if not args.no_sqlite:
                print("SQLite (the same rows, fresh files in a temporary folder):", flush=True)
                lite_rows = run_rows(os.path.join(tmp, "queue.db"), n_add, n_drain, workers, None)
            print(f"\nPostgreSQL, {display_url(args.db)}:")
            print(table(pg_rows, targets=False))
            if lite_rows:
                print("\nSQLite, a local file:")
                print(table(lite_rows))
                print("\nno-op jobs/s, the same drain rows on both backends:")
                print(side_by_side(lite_rows, pg_rows))
            print()
            print_notes(pg_rows, "PostgreSQL ")
            print_notes(lite_rows, "SQLite ")
        if os.cpu_count() != 2:
            print(f"note: the drain target is set for a 2-core machine; this one has {os.cpu_count()} CPUs")
        if args.profile:
            text = io.StringIO()
            pstats.Stats(args.profile, stream=text).sort_stats("tottime").print_stats(20)
            print(f"\ncProfile of the W=1 worker (stats in {args.profile}), top 20 by own time:\n{text.getvalue()}")
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlalchemy.exc.DBAPIError as exc:  # making the PostgreSQL schemas
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        print(f"error: cannot use the database {display_url(args.db)}: {reason}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if pg is not None:
            try:
                pg.drop()
            except sqlalchemy.exc.DBAPIError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
