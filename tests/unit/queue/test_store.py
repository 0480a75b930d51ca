"""Contract tests of runner.queue.store: state machine, claims, fencing, retries, cancel, concurrency
across processes, opening errors, reading back.

The store contract runs on both backends: tests that take the `store`, `url` or `new_url` fixture
run once on a SQLite file and once on a fresh schema of the PostgreSQL test server (marked
`postgres`; skipped, with the reason shown, when no server answers). Tests of SQLite files as such
(headers, folders, WAL) take `db`, a file path."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.databases import pg_connection, sql, write_sqlite

import runner.queue.store.engine as engine_mod
import runner.queue.store.jobs as jobs_mod
from runner.errors import StaleTokenError, TransitionError, UserError
from runner.queue.store import (
    SCHEMA_VERSION,
    TRANSITIONS,
    ClaimedJob,
    JobOutcome,
    JobStatus,
    Store,
    display_url,
    sqlalchemy_url,
)

S = JobStatus
HOST, DEV = "host-a", "cpu"


def _jobs(n: int, start: int = 0, prefix: str = "h") -> list[tuple[str, dict]]:
    return [(f"{prefix}{i}", {"i": i, "lr": 0.1 * i}) for i in range(start, start + n)]


def _done(summary: dict | None = None, **kw) -> JobOutcome:
    return JobOutcome(S.DONE, summary or {"final_train_loss": 0.5}, **kw)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file path (for the tests of SQLite files as such)."""
    return str(tmp_path / "jobs.db")


@pytest.fixture
def store(url: str):
    """A fresh store on the backend under test."""
    s = Store(url, create=True)
    yield s
    s.close()


def _claim(store: Store, worker: str = "w1", device: str = DEV, **kw) -> ClaimedJob:
    job = store.claim(worker, host=HOST, device=device, **kw)
    assert job is not None
    return job


# --- the state machine -----------------------------------------------------------------------------
def test_transition_table_is_the_designed_one():
    assert TRANSITIONS == {
        S.PENDING: {S.RUNNING, S.CANCELLED},
        S.RUNNING: {S.DONE, S.FAILED, S.DIVERGED, S.PENDING, S.CANCELLED},
        S.FAILED: {S.PENDING}, S.DIVERGED: {S.PENDING}, S.CANCELLED: {S.PENDING}, S.DONE: set(),
    }


def _job_in(store: Store, status: JobStatus, tag: str) -> int:
    """A fresh job brought to `status` through the public API."""
    store.add_jobs(f"sweep-{tag}", [(tag, {"tag": tag})], max_attempts=1)
    if status is S.PENDING:
        return store.result_rows(f"sweep-{tag}")[0]["job_id"]
    job = _claim(store, sweep=f"sweep-{tag}")
    if status is S.CANCELLED:
        store.cancel(job_ids=[job.id])
    elif status is not S.RUNNING:
        store.finish(job.id, job.token, JobOutcome(status, {}, error="boom" if status is not S.DONE else None))
    assert store.job_status(job.id) is status
    return job.id


def test_every_allowed_move_works_and_every_other_is_refused_in_the_database(store):
    for source in JobStatus:
        for target in JobStatus:
            job_id = _job_in(store, source, f"{source}-{target}")
            def move(tx, job_id=job_id, target=target):  # through the one move helper
                jobs_mod._move(tx, job_id, target)

            if target in TRANSITIONS[source]:
                store._write(move)
                assert store.job_status(job_id) is target
            else:
                with pytest.raises(TransitionError, match=f"job {job_id} is {source}"):
                    store._write(move)
                assert store.job_status(job_id) is source  # unchanged, nothing half-written


def test_disallowed_moves_through_the_api_raise_and_change_nothing(store):
    done = _job_in(store, S.DONE, "d")
    pending = _job_in(store, S.PENDING, "p")
    with pytest.raises(TransitionError, match="done"):
        store.retry(statuses=[S.DONE])
    with pytest.raises(TransitionError, match="pending"):
        store.retry(statuses=[S.PENDING])
    with pytest.raises(TransitionError, match="running"):
        store.retry(statuses=[S.RUNNING])
    with pytest.raises(TransitionError):
        jobs_mod._guarded(S.RUNNING, sources=[S.DONE])
    assert store.cancel(job_ids=[done]) == 0  # a finished job is not cancelled
    with pytest.raises(StaleTokenError):
        store.finish(pending, 0, _done())
    assert store.job_status(done) is S.DONE and store.job_status(pending) is S.PENDING


def test_finish_refuses_a_non_final_status(store):
    store.add_jobs("s", _jobs(1))
    job = _claim(store)
    with pytest.raises(TransitionError):
        store.finish(job.id, job.token, JobOutcome(S.CANCELLED, {}))
    assert store.job_status(job.id) is S.RUNNING


# --- submit and claim ------------------------------------------------------------------------------
def test_add_jobs_is_idempotent_and_growing_adds_only_new(store):
    assert store.add_jobs("s", _jobs(10)) == (10, 0)
    assert store.add_jobs("s", _jobs(10)) == (0, 10)
    assert store.add_jobs("s", _jobs(15)) == (5, 10)
    assert store.add_jobs("s", _jobs(3) + _jobs(3)) == (0, 6)
    assert store.add_jobs("other", _jobs(4)) == (4, 0)  # the same configs in another sweep are new jobs
    assert store.add_jobs("s", []) == (0, 0)
    assert store.counts() == {"s": dict.fromkeys([s.value for s in JobStatus], 0) | {"pending": 15},
                              "other": dict.fromkeys([s.value for s in JobStatus], 0) | {"pending": 4}}
    assert store.sweeps() == ["s", "other"]
    assert [r["job_id"] for r in store.result_rows()] == list(range(1, 20))  # no gaps from duplicates


def test_add_jobs_rejects_bad_arguments(store):
    with pytest.raises(UserError):
        store.add_jobs("", _jobs(1))
    with pytest.raises(UserError):
        store.add_jobs("s", _jobs(1), max_attempts=0)


def test_claims_follow_priority_then_age_and_sweep_filter(store):
    store.add_jobs("low", _jobs(2, prefix="l"), priority=0)
    store.add_jobs("high", _jobs(2, prefix="x"), priority=5)
    store.add_jobs("mid", _jobs(1, prefix="m"), priority=1)
    order = [_claim(store).sweep for _ in range(3)]
    assert order == ["high", "high", "mid"]
    assert _claim(store, sweep="low").config == {"i": 0, "lr": 0.0}
    assert store.claim("w1", host=HOST, device=DEV, sweep="high") is None
    assert _claim(store).config == {"i": 1, "lr": 0.1}
    assert store.claim("w1", host=HOST, device=DEV) is None


def test_claim_finish_round_trip(store):
    store.add_jobs("s", [("a", {"lr": 0.1, "width": 8})], max_attempts=2)
    t0 = store.clock()
    job = _claim(store, "w7", lease_s=30)
    assert (job.sweep, job.config, job.token, job.attempts, job.max_attempts) == ("s", {"lr": 0.1, "width": 8}, 1, 1, 2)
    assert store.heartbeat(job.id, job.token)
    blob = bytes(range(256)) * 40
    metrics = [(0, "train_loss", 1.0), (10, "train_loss", 0.5), (10, "test_loss", float("nan")), (20, "x", math.inf)]
    summary = {"final_train_loss": 0.5, "steps": 20, "device": DEV, "step_at_0.1": None}
    assert store.finish(job.id, job.token, _done(summary, metrics=metrics, arrays=[("w", 10, blob), ("w", 0, b"")])) \
        is S.DONE
    (row,) = store.result_rows("s")
    assert row["job_id"] == job.id and row["status"] == "done" and row["attempts"] == 1
    assert row["config"] == {"lr": 0.1, "width": 8} and row["summary"] == summary and row["error"] is None
    assert row["created_at"] <= t0 <= row["finished_at"] <= store.clock()
    got = store.metric_rows("s")
    assert [r[:3] for r in got] == [(job.id, 10, "test_loss"), (job.id, 0, "train_loss"), (job.id, 10, "train_loss"),
                                    (job.id, 20, "x")]
    assert math.isnan(got[0][3]) and got[1][3] == 1.0 and got[3][3] == math.inf
    assert store.metric_rows(names=["x"]) == [(job.id, 20, "x", math.inf)]
    assert store.metric_rows(job_ids=[job.id + 1]) == [] and store.metric_rows("nope") == []
    assert store.array_rows(job.id) == [("w", 0, b""), ("w", 10, blob)]
    assert store.array_rows(job.id, "w")[1][2] == blob and store.array_rows(job.id, "v") == []
    (attempt,) = store.attempt_rows(job.id)
    assert attempt["attempt"] == attempt["token"] == 1 and attempt["worker"] == "w7" and attempt["outcome"] == "done"
    assert attempt["host"] == HOST and attempt["device"] == DEV and attempt["started_at"] <= attempt["ended_at"]
    assert store.counts("s")["s"]["done"] == 1 and store.counts("nope") == {}
    assert not store.heartbeat(job.id, job.token)  # finished: no longer ours
    with pytest.raises(StaleTokenError):  # a second write-back cannot duplicate the results
        store.finish(job.id, job.token, _done())
    assert len(store.result_rows("s")) == 1


def _keyed(n: int, key: str | None, prefix: str) -> list[tuple[str, dict, str | None]]:
    return [(f"{prefix}{i}", {"i": i, "key": key}, key) for i in range(n)]


def test_a_group_claim_takes_jobs_of_the_first_jobs_fusion_key_each_with_its_own_claim(store):
    store.add_jobs("s", _keyed(5, "k1", "a"))
    store.add_jobs("s", _keyed(3, "k2", "b"), priority=5)   # k2 first: higher priority
    store.add_jobs("s", _keyed(1, None, "c"), priority=9)   # first of all, but never fused
    alone = store.claim_group("w1", host=HOST, device=DEV, most=4)
    assert [(j.config["key"], j.fusion_key) for j in alone] == [(None, None)]
    group = store.claim_group("w1", host=HOST, device=DEV, most=4)
    assert len(alone) == 1 and [j.config["key"] for j in group] == ["k2"] * 3  # all there are of k2
    group = store.claim_group("w2", host=HOST, device=DEV, most=4)
    assert [j.config["i"] for j in group] == [0, 1, 2, 3] and {j.fusion_key for j in group} == {"k1"}
    assert [j.token for j in group] == [1] * 4 and [j.attempts for j in group] == [1] * 4
    for job in group:  # each its own attempt row, lease and fencing token
        assert [(a["token"], a["worker"]) for a in store.attempt_rows(job.id)] == [(1, "w2")]
        assert store.heartbeat(job.id, job.token)
    store.finish(group[1].id, group[1].token, _done())
    with pytest.raises(StaleTokenError):
        store.finish(group[1].id, group[1].token, _done())
    held = [(j.id, j.token) for j in group]  # the group's beat: one transaction, the finished member refused
    assert store.heartbeat_many(held) == {group[1].id} and store.heartbeat_many([]) == set()
    rest = store.claim_group("w3", host=HOST, device=DEV, most=4)
    assert [(j.config["key"], j.config["i"]) for j in rest] == [("k1", 4)]
    assert store.claim_group("w3", host=HOST, device=DEV, most=4) == []
    assert store.counts("s")["s"]["running"] == 8 and store.counts("s")["s"]["done"] == 1


def test_a_group_claim_of_one_is_a_claim_and_zero_is_refused(store):
    store.add_jobs("s", _keyed(3, "k", "a"))
    assert [j.config["i"] for j in store.claim_group("w", host=HOST, device=DEV, most=1)] == [0]
    assert _claim(store).config["i"] == 1
    with pytest.raises(ValueError):
        store.claim_group("w", host=HOST, device=DEV, most=0)


def _claim_groups_and_finish(db: str, worker: str) -> None:
    """Process target: claim groups of up to 8 jobs and finish each job until the queue is empty."""
    with Store(db) as s:
        while group := s.claim_group(worker, host=HOST, device=DEV, most=8):
            assert len({j.fusion_key for j in group}) == 1
            for job in group:
                s.finish(job.id, job.token, _done({"worker": worker, "group": len(group)}))


def test_four_processes_claiming_groups_take_every_job_exactly_once(url):
    with Store(url, create=True) as s:
        for k in range(6):
            s.add_jobs("race", _keyed(40, f"key{k}", f"k{k}-"))
    ctx = multiprocessing.get_context("spawn")
    _run_all([ctx.Process(target=_claim_groups_and_finish, args=(url, f"w{i}")) for i in range(4)])
    with Store(url) as s:
        rows = s.result_rows()
        assert len(rows) == 240 and {r["status"] for r in rows} == {"done"} and {r["attempts"] for r in rows} == {1}
        assert max(r["summary"]["group"] for r in rows) == 8
    assert sql(url, "SELECT count(*), count(DISTINCT job_id), max(token) FROM attempts") == [(240, 240, 1)]


def test_device_counts_for_the_progress_display(store):
    store.add_jobs("s", _jobs(4))
    early = _claim(store, device="cuda:0")
    store.finish(early.id, early.token, _done())
    time.sleep(0.01)  # SQLite's clock counts milliseconds: keep the finishes apart from `since`
    since = store.clock()
    time.sleep(0.01)
    a, b = _claim(store, device="cuda:0"), _claim(store, device="cuda:1")
    store.finish(a.id, a.token, _done())
    rows = store.device_counts(since=since)
    assert rows == [{"device": "cuda:0", "done": 2, "running": 0, "finished_since": 1},
                    {"device": "cuda:1", "done": 0, "running": 1, "finished_since": 0}]
    assert store.device_counts("other", since=since) == []
    assert b.id not in {early.id, a.id}


# --- leases, fencing, retries ---------------------------------------------------------------------
def test_an_expired_lease_is_reclaimed_and_the_stale_writer_is_refused(store):
    store.add_jobs("s", _jobs(1))
    first = _claim(store, "slow", lease_s=0.05)
    time.sleep(0.1)
    second = _claim(store, "fast", lease_s=30)  # claim reaps the expired lease first
    assert second.id == first.id and second.token == first.token + 1 and second.attempts == 2
    assert not store.heartbeat(first.id, first.token)
    with pytest.raises(StaleTokenError, match=f"job {first.id}: token {first.token} is stale"):
        store.finish(first.id, first.token, _done({"who": "slow"}, metrics=[(1, "m", 1.0)]))
    assert not store.release(first.id, first.token, reason="x", count_attempt=False)
    assert store.heartbeat(second.id, second.token)
    store.finish(second.id, second.token, _done({"who": "fast"}, metrics=[(1, "m", 2.0)]))
    (row,) = store.result_rows()
    assert row["summary"] == {"who": "fast"} and store.metric_rows() == [(first.id, 1, "m", 2.0)]
    history = store.attempt_rows(first.id)
    assert [(h["token"], h["worker"], h["outcome"]) for h in history] == [(1, "slow", "expired"), (2, "fast", "done")]
    assert "lease expired" in history[0]["error"]


def test_leases_are_stamped_and_expired_on_the_databases_clock(store, url, monkeypatch):
    """Issue 15 item 8: a host whose clock runs 120 s ahead neither reaps another host's live 60 s lease
    nor stamps its own from its own clock; the queue's times all come from the database."""
    store.add_jobs("s", _jobs(2))
    behind = _claim(store, "behind", lease_s=60)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    ahead_store = Store(url, lease_s=60)
    try:
        assert ahead_store.reap_expired() == 0
        ahead = ahead_store.claim("ahead", host="host-b", device=DEV)
        assert ahead is not None and ahead.id != behind.id
        assert ahead_store.heartbeat(ahead.id, ahead.token) and store.heartbeat(behind.id, behind.token)
        clock = ahead_store.clock()
    finally:
        ahead_store.close()
    assert abs(clock - real()) < 5
    leases = [row["lease_until"] for row in store.running_jobs()]
    assert all(abs(lease - (real() + 60)) < 5 for lease in leases), leases
    started = [a["started_at"] for job in (behind, ahead) for a in store.attempt_rows(job.id)]
    assert all(abs(t - real()) < 5 for t in started), started


def test_reap_expired_counts_attempts_and_fails_when_exhausted(store):
    store.add_jobs("s", _jobs(2), max_attempts=1)
    store.add_jobs("t", _jobs(1), max_attempts=2)
    jobs = [_claim(store, lease_s=0.5) for _ in range(3)]
    assert store.reap_expired() == 0
    time.sleep(0.6)
    assert store.reap_expired() == 3
    status = {j.sweep: store.job_status(j.id) for j in jobs}
    assert status == {"s": S.FAILED, "t": S.PENDING}
    failed = [r for r in store.result_rows("s")]
    assert all(r["status"] == "failed" and "lease expired" in r["error"] for r in failed)
    assert store.reap_expired() == 0


def test_failed_attempts_go_back_to_pending_until_max_attempts(store):
    store.add_jobs("s", _jobs(1), max_attempts=2)
    job = _claim(store)
    assert store.finish(job.id, job.token, JobOutcome(S.FAILED, {"wall_s": 1}, error="Traceback 1")) is S.PENDING
    row = store.result_rows()[0]
    assert row["status"] == "pending" and row["error"] == "Traceback 1" and row["summary"] == {}
    job = _claim(store)
    assert (job.token, job.attempts) == (2, 2)
    assert store.finish(job.id, job.token, JobOutcome(S.FAILED, {"wall_s": 2}, error="Traceback 2")) is S.FAILED
    row = store.result_rows()[0]
    assert row["status"] == "failed" and row["error"] == "Traceback 2" and row["summary"] == {"wall_s": 2}
    assert store.claim("w1", host=HOST, device=DEV) is None
    assert [h["outcome"] for h in store.attempt_rows(job.id)] == ["failed", "failed"]
    assert store.retry() == 1
    row = store.result_rows()[0]
    assert row["status"] == "pending" and row["attempts"] == 0 and row["summary"] == {}
    job = _claim(store)
    assert (job.token, job.attempts) == (3, 1)  # the token never goes back
    store.finish(job.id, job.token, _done())
    assert store.retry() == 0


def test_retry_by_status_and_sweep(store):
    for name in ("a", "b"):
        store.add_jobs(name, _jobs(2, prefix=name), max_attempts=1)
    for _ in range(4):
        job = _claim(store)
        status = S.DIVERGED if job.config["i"] == 0 else S.FAILED
        store.finish(job.id, job.token, JobOutcome(status, {}, metrics=[(1, "loss", math.nan)], error="why"))
    assert store.retry(sweep="a", statuses=[S.DIVERGED]) == 1
    assert store.counts()["a"] == dict.fromkeys([s.value for s in JobStatus], 0) | {"pending": 1, "failed": 1}
    assert {r[0] for r in store.metric_rows()} == {r["job_id"] for r in store.result_rows() if r["status"] != "pending"}
    assert store.retry(statuses=[S.FAILED, S.DIVERGED]) == 3
    assert store.counts()["b"]["pending"] == 2


def test_release_without_counting_the_attempt_and_with_it(store):
    store.add_jobs("s", _jobs(1), max_attempts=1)
    job = _claim(store)
    assert store.release(job.id, job.token, reason="worker stopped", count_attempt=False)
    assert store.result_rows()[0]["attempts"] == 0 and store.job_status(job.id) is S.PENDING
    job = _claim(store)
    assert (job.token, job.attempts) == (2, 1)
    assert store.release(job.id, job.token, reason="out of memory", count_attempt=True)
    row = store.result_rows()[0]
    assert row["status"] == "failed" and row["error"] == "out of memory"
    assert [h["outcome"] for h in store.attempt_rows(job.id)] == ["released", "released"]


def test_release_worker_returns_a_dead_workers_jobs(store):
    store.add_jobs("s", _jobs(3), max_attempts=2)
    store.register_worker("w1", host=HOST, pid=123, device=DEV)
    a, b = _claim(store, "w1"), _claim(store, "w1")
    c = _claim(store, "w2")
    assert store.release_worker("w1", reason="worker process died (signal 9)") == [a.id, b.id]
    assert [store.job_status(j.id) for j in (a, b, c)] == [S.PENDING, S.PENDING, S.RUNNING]
    again = _claim(store, "w3")
    assert again.attempts == 2 and "died" in store.attempt_rows(again.id)[0]["error"]
    assert store.release_worker("w3", reason="died again") == [again.id]
    assert store.job_status(again.id) is S.FAILED  # out of attempts
    assert store.release_worker("w2", reason="stopping", count_attempt=False) == [c.id]
    assert store.result_rows()[c.id - 1]["attempts"] == 0
    assert store.worker_rows()[0]["exited_at"] is not None


def test_cancel_pending_and_running(store):
    store.add_jobs("s", _jobs(3))
    store.add_jobs("t", _jobs(2))
    running = _claim(store, sweep="s")
    assert store.cancel(job_ids=[running.id + 1]) == 1
    assert store.cancel(sweep="s") == 2  # the running one and the last pending one
    assert not store.heartbeat(running.id, running.token)
    with pytest.raises(StaleTokenError, match="cancelled"):
        store.finish(running.id, running.token, _done())
    assert store.counts("s")["s"]["cancelled"] == 3 and store.counts("t")["t"]["pending"] == 2
    assert store.attempt_rows(running.id)[0]["outcome"] == "cancelled"
    assert store.cancel(sweep="s") == 0
    with pytest.raises(UserError):
        store.cancel()
    assert store.retry(sweep="s", statuses=[S.CANCELLED]) == 3


def test_worker_registry(store):
    store.register_worker("w1", host=HOST, pid=11, device="cuda:0")
    store.worker_seen("w1", job_id=5)
    (row,) = store.worker_rows()
    assert (row["worker"], row["pid"], row["device"], row["job_id"], row["exited_at"]) == ("w1", 11, "cuda:0", 5, None)
    store.worker_exited("w1")
    assert store.worker_rows()[0]["exited_at"] is not None and store.worker_rows()[0]["job_id"] is None
    store.register_worker("w1", host=HOST, pid=12, device="cuda:0")  # a restart under the same name
    assert store.worker_rows()[0]["exited_at"] is None and store.worker_rows()[0]["pid"] == 12


def test_job_status_of_an_unknown_job(store):
    with pytest.raises(UserError, match="no job 99"):
        store.job_status(99)


def test_a_heartbeat_thread_beside_the_main_thread(store):
    store.add_jobs("s", _jobs(200))
    current: list = [None]
    errors: list = []
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                job = current[0]
                if job is not None:
                    store.heartbeat(job.id, job.token)
                store.worker_seen("w1", job_id=job.id if job else None)
            except Exception as exc:  # noqa: BLE001 - the assertion below reports it
                errors.append(exc)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        while (job := store.claim("w1", host=HOST, device=DEV)) is not None:
            current[0] = job
            store.finish(job.id, job.token, _done())
    finally:
        stop.set()
        thread.join()
    assert not errors and store.counts()["s"]["done"] == 200


def test_a_store_is_never_pickled(store):
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(store)


ops = st.lists(st.one_of(
    st.tuples(st.just("claim"), st.sampled_from(["w1", "w2"]), st.sampled_from([30.0, -1.0])),  # -1: born expired
    st.tuples(st.just("finish"), st.integers(0, 9), st.sampled_from([S.DONE, S.FAILED, S.DIVERGED])),
    st.tuples(st.just("release"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("cancel"), st.integers(1, 4)),
    st.tuples(st.just("retry"), st.sets(st.sampled_from([S.FAILED, S.DIVERGED, S.CANCELLED]), min_size=1)),
    st.tuples(st.just("worker_died"), st.sampled_from(["w1", "w2"])),
    st.tuples(st.just("reap")),
), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_random_operations_keep_the_invariants(new_url, ops):
    """Whatever happens, each job's row, results and attempt history agree."""
    with Store(new_url(), create=True) as store:
        store.add_jobs("s", _jobs(4), max_attempts=2)
        held: list[ClaimedJob] = []
        for op, *args in ops:
            if op == "claim" and (job := store.claim(args[0], host=HOST, device=DEV, lease_s=args[1])):
                held.append(job)
            elif op == "finish" and held:
                job = held[args[0] % len(held)]
                try:
                    store.finish(job.id, job.token, JobOutcome(args[1], {"ok": 1}, [(1, "m", 1.0)], error="e"))
                except StaleTokenError:
                    assert not (store.job_status(job.id) is S.RUNNING and _token(store, job.id) == job.token)
            elif op == "release" and held:
                job = held[args[0] % len(held)]
                store.release(job.id, job.token, reason="r", count_attempt=args[1])
            elif op == "cancel":
                store.cancel(job_ids=[args[0]])
            elif op == "retry":
                store.retry(statuses=sorted(args[0]))
            elif op == "worker_died":
                store.release_worker(args[0], reason="died")
            elif op == "reap":
                store.reap_expired()
            _check_invariants(store)


def _token(store: Store, job_id: int) -> int:
    history = store.attempt_rows(job_id)
    return history[-1]["token"] if history else 0


def _check_invariants(store: Store) -> None:
    for row in store.result_rows():
        status, history = JobStatus(row["status"]), store.attempt_rows(row["job_id"])
        assert 0 <= row["attempts"] <= 2
        assert [h["token"] for h in history] == list(range(1, len(history) + 1))  # one row per claim
        open_rows = [h for h in history if h["ended_at"] is None]
        assert len(open_rows) == (status is S.RUNNING)  # only a running job has an open attempt
        if row["summary"]:  # results exist only for a job that ended through finish()
            assert status in (S.DONE, S.FAILED, S.DIVERGED) and row["summary"] == {"ok": 1}
        assert len(store.metric_rows(job_ids=[row["job_id"]])) == (row["summary"] != {})


# --- several processes on one file -------------------------------------------------------------------
def _claim_and_finish(db: str, worker: str) -> None:
    """Process target: claim and finish no-op jobs until the queue is empty."""
    with Store(db) as s:
        while (job := s.claim(worker, host=HOST, device=DEV)) is not None:
            s.finish(job.id, job.token, _done({"worker": worker}, metrics=[(1, "loss", 0.1)]))


def _claim_until_flag(db: str, worker: str, flag: str) -> None:
    with Store(db) as s:
        while True:
            job = s.claim(worker, host=HOST, device=DEV)
            if job is not None:
                s.finish(job.id, job.token, _done())
            elif os.path.exists(flag):
                return
            else:
                time.sleep(0.005)


def _add_overlapping(db: str, k: int, out: str) -> None:
    added = existing = 0
    with Store(db, create=True) as s:
        for batch in range(10):
            a, e = s.add_jobs("shared", _jobs(100, start=k * 100 + batch * 100))
            added, existing = added + a, existing + e
    Path(out).write_text(json.dumps([added, existing]))


def _run_all(procs: list) -> None:
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_eight_processes_claim_every_job_exactly_once(url):
    db = url
    with Store(db, create=True) as s:
        s.add_jobs("race", _jobs(400))
    ctx = multiprocessing.get_context("spawn")
    _run_all([ctx.Process(target=_claim_and_finish, args=(db, f"w{i}")) for i in range(8)])
    with Store(db) as s:
        rows = s.result_rows()
        assert len(rows) == 400 and {r["status"] for r in rows} == {"done"} and {r["attempts"] for r in rows} == {1}
        assert len({r["job_id"] for r in rows}) == 400 and all(r["summary"]["worker"] for r in rows)
        for r in rows[::37]:
            assert [(h["token"], h["outcome"]) for h in s.attempt_rows(r["job_id"])] == [(1, "done")]
        assert len(s.metric_rows()) == 400
    assert sql(db, "SELECT count(*), count(DISTINCT job_id), max(token) FROM attempts") == [(400, 400, 1)]
    assert sql(db, "SELECT count(*) FROM results") == [(400,)]


def test_claimers_and_submitters_at_once_see_no_errors(url, tmp_path):
    db = url
    with Store(db, create=True) as s:
        s.add_jobs("seed", _jobs(100))
    ctx = multiprocessing.get_context("spawn")
    flag, outs = str(tmp_path / "flag"), [str(tmp_path / f"add{k}.json") for k in range(4)]
    claimers = [ctx.Process(target=_claim_until_flag, args=(db, f"c{i}", flag)) for i in range(4)]
    adders = [ctx.Process(target=_add_overlapping, args=(db, k, outs[k])) for k in range(4)]
    for p in claimers + adders:
        p.start()
    for p in adders:
        p.join(timeout=120)
    Path(flag).touch()
    for p in claimers:
        p.join(timeout=120)
    assert [p.exitcode for p in claimers + adders] == [0] * 8
    totals = [json.loads(Path(o).read_text()) for o in outs]
    assert sum(a for a, _ in totals) == 1300 and sum(a + e for a, e in totals) == 4000  # 13 distinct batches
    with Store(db) as s:
        assert s.counts() == {name: dict.fromkeys([x.value for x in JobStatus], 0) | {"done": n}
                              for name, n in (("seed", 100), ("shared", 1300))}


def test_racing_submitters_create_the_schema_once(url, tmp_path):
    db = url  # a file not there yet, or an empty schema
    outs = [str(tmp_path / f"add{k}.json") for k in range(4)]
    ctx = multiprocessing.get_context("spawn")
    _run_all([ctx.Process(target=_add_overlapping, args=(db, k, outs[k])) for k in range(4)])
    assert sum(json.loads(Path(o).read_text())[0] for o in outs) == 1300
    with Store(db) as s:
        assert s.counts()["shared"]["pending"] == 1300


class _Blocker:
    """Another program holding a write lock on the queue: SQLite's BEGIN IMMEDIATE, or PostgreSQL's
    LOCK TABLE jobs IN EXCLUSIVE MODE (claims wait for it like for SQLite's lock)."""

    def __init__(self, url: str, backend: str) -> None:
        if backend == "sqlite":
            self.con = sqlite3.connect(url, isolation_level=None, check_same_thread=False)
            self.lock_sql = "BEGIN IMMEDIATE"
        else:
            self.pg = pg_connection(url)
            self.con = self.pg.__enter__()
            self.lock_sql = "BEGIN; LOCK TABLE jobs IN EXCLUSIVE MODE"

    def lock(self) -> None:
        for statement in self.lock_sql.split("; "):
            self.con.execute(statement)

    def rollback(self) -> None:
        self.con.execute("ROLLBACK")

    def close(self) -> None:
        self.con.close()


def test_a_long_write_lock_is_waited_out_and_a_stuck_one_is_a_user_error(url, backend, monkeypatch):
    db = url
    with Store(db, create=True) as s:
        s.add_jobs("s", _jobs(2))
    blocker = _Blocker(db, backend)
    blocker.lock()
    threading.Timer(0.5, blocker.rollback).start()
    with Store(db) as s:
        t0 = time.monotonic()
        assert s.claim("w", host=HOST, device=DEV) is not None  # waited for the lock, no error
        assert time.monotonic() - t0 > 0.3
    monkeypatch.setattr(engine_mod, "BUSY_TIMEOUT_S", 0.2)
    blocker.lock()
    try:
        with Store(db) as s:
            with pytest.raises(UserError, match="stayed locked .*close it and try again") as err:
                s.claim("w", host=HOST, device=DEV)
            assert "\n" not in str(err.value)
    finally:
        blocker.rollback()
        blocker.close()


# --- opening -------------------------------------------------------------------------------------
def _unchanged(path: Path, create: bool = False, match: str | None = None) -> str:
    before = path.read_bytes()
    with pytest.raises(UserError, match=match) as err:
        Store(str(path), create=create)
    assert path.read_bytes() == before
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_database_is_not_created_without_create(tmp_path):
    path = tmp_path / "jobs.db"
    with pytest.raises(UserError, match="no runner database at .*runner submit"):
        Store(str(path))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=f"folder {tmp_path / 'nope'} .*create it or choose another --db"):
        Store(str(tmp_path / "nope" / "jobs.db"), create=True)
    assert list(tmp_path.iterdir()) == []


NOT_SQLITE = {"text": b"hello, this is a text file\n" * 20, "zeros": b"\x00" * 4096,
              "damaged": b"SQLite format 3\x00" + b"x" * 5000}


@pytest.mark.parametrize("content", NOT_SQLITE.values(), ids=NOT_SQLITE.keys())
def test_a_file_that_is_not_sqlite_is_left_alone(tmp_path, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    for create in (False, True):
        assert "not a" in _unchanged(path, create=create)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_a_database_of_another_program_is_left_alone(tmp_path):
    path = write_sqlite(tmp_path / "other.db", "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
                        "INSERT INTO customers (name) VALUES ('ada')")
    assert "customers" in _unchanged(path, create=True, match="another program; choose|another program .*choose")
    other_meta = write_sqlite(tmp_path / "meta.db", "CREATE TABLE meta (key TEXT, value TEXT)",
                              "INSERT INTO meta VALUES ('app', 'someone-else')")
    _unchanged(other_meta, create=True, match="another program")


def test_an_empty_file_or_database_gets_our_schema_only_with_create(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    _unchanged(empty, match="no runner database")
    with Store(str(empty), create=True) as s:
        assert s.add_jobs("s", _jobs(1)) == (1, 0)
    blank = tmp_path / "blank.db"
    con = sqlite3.connect(blank)
    con.execute("PRAGMA user_version = 7")  # a valid database file without tables
    con.close()
    _unchanged(blank, match="no runner database")
    with Store(str(blank), create=True) as s:
        assert s.counts() == {}
    con = sqlite3.connect(blank)
    assert dict(con.execute("SELECT key, value FROM meta")) == {"app": "runner", "schema_version": str(SCHEMA_VERSION)}
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()


@pytest.mark.parametrize("version,match", [(SCHEMA_VERSION + 1, "newer runner .*upgrade runner"),
                                           (SCHEMA_VERSION - 1, "older runner .*runner db upgrade")])
def test_a_schema_of_another_version_is_refused(url, backend, version, match):
    Store(url, create=True).close()
    sql(url, "UPDATE meta SET value = :v WHERE key = 'schema_version'", {"v": str(version)})
    if backend == "sqlite":
        sql(url, "PRAGMA wal_checkpoint(TRUNCATE)")
        _unchanged(Path(url), create=True, match=match)
        return
    for create in (False, True):
        with pytest.raises(UserError, match=match) as err:
            Store(url, create=create)
        assert "\n" not in str(err.value)
    assert sql(url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(version),)]
    if version > SCHEMA_VERSION:  # `runner db upgrade` does not take a newer database either
        with pytest.raises(UserError, match=match):
            Store(url, upgrade=True)


def test_an_existing_runner_database_opens_and_create_is_harmless(url):
    db = url
    with Store(db, create=True) as s:
        s.add_jobs("s", _jobs(3))
    with Store(db, create=True) as s:
        assert s.counts()["s"]["pending"] == 3
    with Store(db) as s:
        assert s.sweeps() == ["s"]


def test_urls_that_cannot_be_used_never_show_a_password():
    for url in ("postgresql://u:secret@127.0.0.1:1/x", "nosuchdialect://u:secret@h/x", "sqlite+nodriver:///x.db",
                "sqlite://", "mysql://u:secret@localhost/db", "postgresql://u:secret@host:notaport/x"):
        with pytest.raises(UserError) as err:
            Store(url, create=True)
        message = str(err.value)
        assert "secret" not in message and "\n" not in message, message
        assert display_url(url) in message
    assert display_url("postgresql://u:secret@127.0.0.1:1/x") == "postgresql://u:***@127.0.0.1:1/x"
    assert display_url("postgresql://u:secret@host:notaport/x") == "postgresql://u:***@host:notaport/x"


# --- opening a PostgreSQL database ------------------------------------------------------------------
def _pg_tables(url: str) -> list[str]:
    return sorted(r[0] for r in sql(url, "SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = current_schema()"))


@pytest.mark.postgres
def test_postgres_an_empty_schema_gets_ours_only_with_create(pg_url):
    with pytest.raises(UserError, match="no runner database at .*runner submit") as err:
        Store(pg_url)
    assert "\n" not in str(err.value) and _pg_tables(pg_url) == []
    with Store(pg_url, create=True) as s:
        assert s.path is None and s.counts() == {}
    assert _pg_tables(pg_url) == ["arrays", "attempts", "jobs", "meta", "metrics", "results", "submissions", "sweeps",
                                  "workers"]
    assert dict(sql(pg_url, "SELECT key, value FROM meta")) == {"app": "runner", "schema_version": str(SCHEMA_VERSION)}
    types = dict(sql(pg_url, "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = current_schema()"))
    assert types["arrays.data"] == "bytea" and types["metrics.value"] == "double precision"  # npy bytes, NaN kept
    assert types["jobs.lease_until"] == "double precision" and types["jobs.config"] == "text"


@pytest.mark.postgres
def test_postgres_a_schema_of_another_program_is_left_alone(pg_url):
    sql(pg_url, "CREATE TABLE customers (id serial PRIMARY KEY, name text)")
    for create in (False, True):
        with pytest.raises(UserError, match="another program .*customers.*choose another --db") as err:
            Store(pg_url, create=create)
        assert "\n" not in str(err.value)
    assert _pg_tables(pg_url) == ["customers"]


@pytest.mark.postgres
def test_postgres_what_cannot_be_opened_is_one_line_without_the_password(pg_url):
    from support.databases import pg_schema_url

    cases = {
        pg_schema_url("runner_test_no_such_schema"): "no schema of its search_path exists",
        pg_url.replace("/test?", "/runner_no_such_database?"): 'cannot open the database .*"runner_no_such_database"',
        pg_url.replace("postgres@", "runner_no_such_user:secret@"): "cannot open the database .*runner_no_such_user",
        pg_url.replace("postgresql+psycopg://", "postgresql+pg8000://u:secret@", 1).replace("postgres@", ""):
            "psycopg 3",
    }
    for url, match in cases.items():
        t0 = time.monotonic()
        with pytest.raises(UserError, match=match) as err:
            Store(url, create=True)
        message = str(err.value)
        assert "\n" not in message and "secret" not in message and display_url(url) in message, message
        assert time.monotonic() - t0 < 15
    assert "runner_test_no_such_schema" not in [r[0] for r in sql(pg_url, "SELECT nspname FROM pg_namespace")]


@pytest.mark.postgres
def test_postgres_a_connection_the_server_dropped_is_replaced(pg_url):
    with Store(pg_url, create=True) as s:
        s.add_jobs("s", _jobs(3))
        backend_pid = s._read(lambda tx: tx.dbapi.execute("SELECT pg_backend_pid()").fetchone()[0])
        assert sql(pg_url, "SELECT application_name FROM pg_stat_activity WHERE pid = :p", {"p": backend_pid}) \
            == [("runner",)]
        sql(pg_url, "SELECT pg_terminate_backend(:p)", {"p": backend_pid})  # an admin, a restart, a firewall
        job = _claim(s)  # the pooled connection is dead: dropped, a new one made, the claim run again
        s.finish(job.id, job.token, _done())
        assert s.counts()["s"] == dict.fromkeys([x.value for x in JobStatus], 0) | {"done": 1, "pending": 2}


def test_sqlalchemy_url_of_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sqlalchemy_url("jobs.db") == f"sqlite:///{tmp_path / 'jobs.db'}"
    assert sqlalchemy_url("/abs/path.db") == "sqlite:////abs/path.db"
    assert sqlalchemy_url("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    odd = tmp_path / "a?b#c%d.db"  # characters that mean something in a URL
    with Store(str(odd), create=True) as s:
        assert s.path == str(odd)
    assert odd.exists()
    with Store("jobs.db", create=True) as s:
        s.add_jobs("s", _jobs(1))
    with Store(f"sqlite:///{tmp_path / 'jobs.db'}") as s:
        assert s.sweeps() == ["s"]


# --- speed (printed, loosely bounded) ---------------------------------------------------------------
def test_add_100k_jobs_timing(store, capsys):
    jobs = [(f"{i:032x}", {"lr": 0.001 * (i % 7), "width": 256 << (i % 3), "seed": i, "batchfn": "gaussian_teacher"})
            for i in range(100_000)]
    t0 = time.perf_counter()
    assert store.add_jobs("big", jobs) == (100_000, 0)
    took = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert store.add_jobs("big", jobs) == (0, 100_000)
    again = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(200):
        job = store.claim("w", host=HOST, device=DEV)
        store.finish(job.id, job.token, _done())
    per_job = (time.perf_counter() - t0) / 200
    with capsys.disabled():
        print(f"\nadd_jobs 100k: {took:.2f} s (again: {again:.2f} s); claim+finish: {per_job * 1e3:.2f} ms/job")
    assert took < 30
