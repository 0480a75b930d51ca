"""The job store on a real SQLite file: states, claims, leases, fencing, retries, opening errors."""
from __future__ import annotations

import hashlib
import io
import multiprocessing as mp
import pickle
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from runner.errors import StaleTokenError, TransitionError, UserError
from runner.npy import from_npy, to_npy
from runner.store import SCHEMA_VERSION, TRANSITIONS, JobOutcome, JobStatus, Store

S = JobStatus


def _jobs(n: int, start: int = 0) -> list[tuple[str, dict]]:
    return [(f"h{i}", {"i": i}) for i in range(start, start + n)]


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "jobs.db"), create=True, lease_s=30)
    yield s
    s.close()


def _done(summary: dict | None = None, **kw) -> JobOutcome:
    return JobOutcome(S.DONE, summary or {"final_train_loss": 0.5}, **kw)


def test_transition_table_is_the_one_described():
    assert TRANSITIONS[S.DONE] == frozenset()
    assert TRANSITIONS[S.PENDING] == {S.RUNNING, S.CANCELLED}
    assert S.PENDING in TRANSITIONS[S.RUNNING] and S.DONE in TRANSITIONS[S.RUNNING]


def test_add_is_idempotent_and_claims_follow_priority(store):
    assert store.add_jobs("a", _jobs(3)) == (3, 0)
    assert store.add_jobs("a", _jobs(5)) == (2, 3)
    assert store.add_jobs("b", _jobs(1), priority=5) == (1, 0)  # same hash, other sweep: a new job
    first = store.claim("w", host="h", device="cpu")
    assert first.sweep == "b" and first.token == 1 and first.attempts == 1
    assert store.claim("w", host="h", device="cpu", sweep="a").config == {"i": 0}
    assert store.counts() == {"a": {**{s.value: 0 for s in S}, "pending": 4, "running": 1},
                              "b": {**{s.value: 0 for s in S}, "running": 1}}


def test_round_trip_of_results_metrics_arrays_and_attempts(store):
    store.add_jobs("s", _jobs(1))
    job = store.claim("w1", host="h", device="cuda:0")
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    final = store.finish(job.id, job.token, _done({"final_train_loss": None, "steps": 3},
                                                   metrics=[(0, "test_loss", 1.0), (3, "test_loss", 0.25)],
                                                   arrays=[("w", 3, to_npy(weights))]))
    assert final == S.DONE and store.job_status(job.id) == S.DONE
    row = store.result_rows("s")[0]
    assert row["summary"] == {"final_train_loss": None, "steps": 3} and row["status"] == "done"
    assert store.metric_rows("s") == [(job.id, 0, "test_loss", 1.0), (job.id, 3, "test_loss", 0.25)]
    (name, step, data), = store.array_rows(job.id)
    np.testing.assert_array_equal(from_npy(data), weights)
    (attempt,) = store.attempt_rows(job.id)
    assert attempt["worker"] == "w1" and attempt["device"] == "cuda:0" and attempt["outcome"] == "done"
    with pytest.raises(StaleTokenError):  # a second write-back of the same attempt is refused
        store.finish(job.id, job.token, _done())
    assert len(store.result_rows("s")) == 1


def test_fencing_a_worker_that_lost_its_lease_cannot_overwrite(tmp_path):
    db = str(tmp_path / "jobs.db")
    a, b = Store(db, create=True, lease_s=0.2), Store(db, lease_s=30)
    a.add_jobs("s", _jobs(1))
    old = a.claim("A", host="h", device="cpu")
    time.sleep(0.3)
    new = b.claim("B", host="h", device="cpu")
    assert new.id == old.id and new.token == old.token + 1 and new.attempts == 2
    assert a.heartbeat(old.id, old.token) is False
    b.finish(new.id, new.token, _done({"by": "B"}))
    with pytest.raises(StaleTokenError):
        a.finish(old.id, old.token, _done({"by": "A"}))
    assert b.result_rows()[0]["summary"] == {"by": "B"}
    assert [r["outcome"] for r in b.attempt_rows(old.id)] == ["expired", "done"]
    a.close(), b.close()


def test_failures_retry_until_max_attempts_then_stay_failed(store):
    store.add_jobs("s", _jobs(1), max_attempts=2)
    for expected in (S.PENDING, S.FAILED):
        job = store.claim("w", host="h", device="cpu")
        assert store.finish(job.id, job.token, JobOutcome(S.FAILED, {}, error="Traceback...\nValueError: x")) == expected
    row = store.result_rows()[0]
    assert row["status"] == "failed" and row["attempts"] == 2 and "ValueError: x" in row["error"]
    assert store.claim("w", host="h", device="cpu") is None
    assert store.retry(sweep="s") == 1
    job = store.claim("w", host="h", device="cpu")
    assert job.attempts == 1 and job.token == 3


def test_graceful_release_keeps_the_attempt_and_a_death_uses_one(store):
    store.add_jobs("s", _jobs(1), max_attempts=2)
    job = store.claim("w1", host="h", device="cpu")
    assert store.release(job.id, job.token, reason="stop", count_attempt=False)
    job = store.claim("w2", host="h", device="cpu")
    assert job.attempts == 1
    assert store.release_worker("w2", reason="worker process died (signal 9)") == [job.id]
    job = store.claim("w3", host="h", device="cpu")
    assert job.attempts == 2
    assert store.release_worker("w3", reason="died again") == [job.id]
    assert store.job_status(job.id) == S.FAILED  # out of attempts


def test_cancel_pending_and_running(store):
    store.add_jobs("s", _jobs(3))
    running = store.claim("w", host="h", device="cpu")
    assert store.cancel(sweep="s") == 3
    assert store.heartbeat(running.id, running.token) is False
    with pytest.raises(StaleTokenError):
        store.finish(running.id, running.token, _done())
    assert store.cancel(sweep="s") == 0
    with pytest.raises(TransitionError):
        store.retry(statuses=[S.DONE])


def _claim_all(db: str, name: str, out: "mp.Queue") -> None:
    store = Store(db, lease_s=60)
    got = []
    while (job := store.claim(name, host="h", device="cpu")) is not None:
        store.finish(job.id, job.token, _done({"by": name}))
        got.append(job.id)
    store.close()
    out.put(got)


def test_eight_processes_claim_every_job_exactly_once(tmp_path):
    db = str(tmp_path / "jobs.db")
    store = Store(db, create=True)
    store.add_jobs("s", _jobs(400))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db, f"p{i}", out)) for i in range(8)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    wall = time.perf_counter() - t0
    ids = [i for got in claimed for i in got]
    print(f"\n8 processes: 400 jobs claimed+finished in {wall:.2f}s; per process: {[len(g) for g in claimed]}")
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(ids) == list(range(1, 401))  # every job once, none twice
    rows = store.result_rows("s")
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
    assert sum(len(store.attempt_rows(r["job_id"])) for r in rows) == 400
    assert sum(1 for g in claimed if g) >= 2
    store.close()


def _submit_many(db: str, start: int, out: "mp.Queue") -> None:
    try:
        store = Store(db, create=True)
        for k in range(10):
            store.add_jobs("s", _jobs(20, start + 20 * k))
        store.close()
        out.put("ok")
    except Exception as exc:  # pragma: no cover - the failure we test against
        out.put(repr(exc))


def test_submitters_and_claimers_contend_without_lock_errors(tmp_path):
    db = str(tmp_path / "jobs.db")
    Store(db, create=True).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_submit_many, args=(db, 1000 * i, out)) for i in range(4)]
    procs += [ctx.Process(target=_claim_all, args=(db, f"c{i}", out)) for i in range(4)]
    for p in procs:
        p.start()
    answers = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [a for a in answers if isinstance(a, str)] == ["ok"] * 4
    claimed = [i for a in answers if isinstance(a, list) for i in a]
    assert len(claimed) == len(set(claimed))


# --- opening ---------------------------------------------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(db: str, words: str, create: bool = False) -> str:
    with pytest.raises(UserError) as info:
        Store(db, create=create)
    message = str(info.value)
    assert words in message and "\n" not in message, message
    return message


def test_no_database_is_not_created_by_reading(tmp_path):
    _refused(str(tmp_path / "jobs.db"), "no runner database")
    assert not (tmp_path / "jobs.db").exists()
    _refused(str(tmp_path / "missing" / "jobs.db"), "does not exist", create=True)


@pytest.mark.parametrize("create", [False, True])
def test_foreign_files_are_refused_and_left_untouched(tmp_path, create):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit(), con.close()
    newer = tmp_path / "newer.db"
    Store(str(newer), create=True).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit(), con.close()
    for path, words in ((junk, "not a SQLite database"), (other, "another program"), (newer, "newer runner")):
        before = _sha(path)
        _refused(str(path), words, create=create)
        assert _sha(path) == before


def test_bad_urls_never_show_the_password():
    message = _refused("postgresql+psycopg://alice:s3cret@127.0.0.1:1/x", "postgresql")
    assert "s3cret" not in message and "***" in message
    assert "s3cret" not in _refused("nosuchdialect://bob:s3cret@host/db", "")


def test_pickled_arrays_are_refused():
    payload = io.BytesIO()
    np.save(payload, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        from_npy(payload.getvalue())
    with pytest.raises(ValueError):
        from_npy(pickle.dumps([1, 2, 3]))
    with pytest.raises(TypeError):
        to_npy(np.array([object()]))
