"""Job moves: the transition table, the guarded UPDATE every status change goes through, the named
statements of the claim/finish path, and the queue operations built on them (submit, claim,
heartbeat, finish, release, reap, cancel, retry) with the worker registry."""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import bindparam, delete, insert, select, update

from ... import __version__
from ...errors import NoSuchSweep, StaleTokenError, StoreError, TransitionError, UserError
from ...train.fusion import group_cap
from ..states import AttemptOutcome, JobStatus
from .engine import _chunks, _Tx
from .one_machine import machine_id
from .reads import Reads
from .schema import _status_in, arrays_t, attempts_t, jobs_t, metrics_t, results_t, submissions_t, sweeps_t, workers_t

REAP_EVERY_S = 1.0       # PostgreSQL: a claim looks for expired leases at most this often per process

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
    """A job a worker now holds: its config, and the fencing token its writes must carry."""
    id: int
    sweep: str
    config: dict
    token: int
    attempts: int
    max_attempts: int
    fusion_key: str | None = None  # jobs of one key may train as one batched model (None: never fused)
    signature: str | None = None   # the submitter's HMAC of the config (runner.signing), if it signed
    checkpoint_digest: str | None = None  # the digest of the last checkpoint file written for it, if any


@dataclass(frozen=True)
class JobOutcome:
    """What a worker writes back at the end of a job (status DONE, FAILED or DIVERGED)."""
    status: JobStatus
    summary: dict[str, Any]
    metrics: Sequence[tuple[int, str, float]] = ()   # (step, name, value); the last of duplicates wins
    arrays: Sequence[tuple[str, int, bytes]] = ()    # (name, step, npy bytes)
    error: str | None = None                         # traceback (FAILED) or reason (DIVERGED)
    permanent: bool = False                          # FAILED the same way on every attempt: no retry
    log: str | None = None                           # the end of what the attempt's code printed
    log_dropped: int = 0                             # bytes of it dropped before that end


def _p(**params: Any) -> dict[str, Any]:
    """Values for bindparam("p_<name>"): the prefix keeps them apart from column names."""
    return {f"p_{k}": v for k, v in params.items()}


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


# --- state moves: the one place a job's status changes ---------------------------------------------
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


def _record_axes(tx: _Tx, sweep: str, axes: Sequence[str], now: float) -> None:
    """The sweep's row, made if missing, with these axes added to those it has (in first-seen order).
    The row is locked (PostgreSQL) so two racing submits both land."""
    tx.run(_upserts_of(tx.dialect.name)[2], _p(name=sweep, axes="[]", now=now))
    known = json.loads(tx.one(Q_SWEEP_AXES_LOCKED, _p(name=sweep))[0])  # type: ignore[index]
    union = known + [a for a in dict.fromkeys(axes) if a not in known]
    if union != known:
        tx.run(Q_SET_AXES, _p(name=sweep, axes=_dumps(union)))


def _requeue(tx: _Tx, held: tuple, now: float, *, reason: str, outcome: AttemptOutcome, count_attempt: bool,
             log: str | None = None, log_dropped: int = 0) -> None:
    """A running job (id, token, attempts, max_attempts) goes back to pending, or to failed when
    its last counted attempt ended; its attempt row is closed (with the attempt's log, if given)."""
    job_id, token, attempts, max_attempts = held
    if count_attempt and attempts >= max_attempts:
        _move(tx, job_id, S.FAILED, token, lease_until=None, finished_at=now, error=reason)
    elif count_attempt:
        _move(tx, job_id, S.PENDING, token, lease_until=None, error=reason)
    else:  # a graceful stop: this attempt does not count
        _move(tx, job_id, S.PENDING, token, lease_until=None, attempts=attempts - 1)
    tx.run(Q_END_ATTEMPT, _p(job_id=job_id, fence=token, now=now, outcome=outcome.value, error=reason, log=log,
                             log_dropped=log_dropped if log is not None else None))


# --- named statements (bound values are p_<name>) --------------------------------------------------
_next_pending = (select(jobs_t.c.id).where(jobs_t.c.status == S.PENDING.value)
                 .order_by(jobs_t.c.priority.desc(), jobs_t.c.id))
_claimed = {"token": jobs_t.c.token + 1, "attempts": jobs_t.c.attempts + 1, "worker": bindparam("p_worker"),
            "host": bindparam("p_host"), "device": bindparam("p_device"), "lease_until": bindparam("p_lease"),
            "started_at": bindparam("p_now"), "finished_at": None}
_held = (jobs_t.c.id, jobs_t.c.token, jobs_t.c.attempts, jobs_t.c.max_attempts)
_returned = (*_held, jobs_t.c.sweep, jobs_t.c.config, jobs_t.c.fusion_key,  # what a claim hands the worker
             jobs_t.c.signature, jobs_t.c.checkpoint_digest)
# FOR UPDATE [SKIP LOCKED] is for PostgreSQL, where claimers run side by side: a claim or a reap
# skips rows another transaction holds, and a select that precedes a fenced move locks its rows.
# SQLite renders none of it (BEGIN IMMEDIATE already serialises writers).
Q_CLAIM = (  # the next pending job by priority, then age: pending -> running, token + 1
    _guarded(S.RUNNING, jobs_t.c.id == _next_pending.limit(1).with_for_update(skip_locked=True).scalar_subquery())
    .values(_claimed).returning(*_returned))
Q_CLAIM_SWEEP = (  # the same within one sweep
    _guarded(S.RUNNING, jobs_t.c.id == _next_pending.where(jobs_t.c.sweep == bindparam("p_sweep")).limit(1)
             .with_for_update(skip_locked=True).scalar_subquery())
    .values(_claimed).returning(*_returned))
# Up to p_most more pending jobs of one fusion key, by priority then age. The pick is a MATERIALIZED
# CTE: inside `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL re-ran the subquery as the
# UPDATE went, skipping the rows it had just updated itself, and took every job of the key (40 of
# 40 with LIMIT 7); computed once, the pick is n rows.
_picked = (select(jobs_t.c.id).where(jobs_t.c.status == S.PENDING.value, jobs_t.c.fusion_key == bindparam("p_key"))
           .order_by(jobs_t.c.priority.desc(), jobs_t.c.id).limit(bindparam("p_most"))
           .with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED"))
Q_CLAIM_FUSED = (_guarded(S.RUNNING, jobs_t.c.id.in_(select(_picked.c.id)))
                 .values(_claimed).returning(*_returned))
Q_START_ATTEMPT = insert(attempts_t).values(  # one history row per claim
    job_id=bindparam("p_job_id"), token=bindparam("p_token"), worker=bindparam("p_worker"),
    host=bindparam("p_host"), device=bindparam("p_device"), started_at=bindparam("p_now"))
Q_END_ATTEMPT = update(attempts_t).where(  # close the history row of (job, token)
    attempts_t.c.job_id == bindparam("p_job_id"), attempts_t.c.token == bindparam("p_fence"),
).values(ended_at=bindparam("p_now"), outcome=bindparam("p_outcome"), error=bindparam("p_error"),
          log=bindparam("p_log"), log_dropped=bindparam("p_log_dropped"))
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
Q_CHECKPOINTED = update(jobs_t).where(  # the digest of the checkpoint file a job we hold just wrote
    jobs_t.c.id == bindparam("p_job_id"), jobs_t.c.token == bindparam("p_fence"), jobs_t.c.status == S.RUNNING.value,
).values(checkpoint_digest=bindparam("p_digest"))
Q_RESULT, Q_METRIC, Q_ARRAY = insert(results_t), insert(metrics_t), insert(arrays_t)  # a job's final write


def _upserts(upsert: Any) -> tuple[Any, Any]:
    """(Q_ADD, Q_REGISTER, Q_NEW_SWEEP) built with one dialect's insert (the same on_conflict API, separate classes)."""
    add = upsert(jobs_t).on_conflict_do_nothing(index_elements=[jobs_t.c.sweep, jobs_t.c.config_hash])  # idempotent
    register = upsert(workers_t).values(worker=bindparam("p_worker"), host=bindparam("p_host"), pid=bindparam("p_pid"),
                                        device=bindparam("p_device"), started_at=bindparam("p_now"),
                                        seen_at=bindparam("p_now"), version=bindparam("p_version"),
                                        machine=bindparam("p_machine"))
    new_sweep = upsert(sweeps_t).values(name=bindparam("p_name"), axes=bindparam("p_axes"),
                                        created_at=bindparam("p_now")).on_conflict_do_nothing(index_elements=[sweeps_t.c.name])
    return add, register.on_conflict_do_update(  # a worker (re)starts
        index_elements=[workers_t.c.worker],
        set_={c: register.excluded[c] for c in ("host", "pid", "device", "started_at", "seen_at", "version", "machine")}
        | {"job_id": None, "exited_at": None}), new_sweep


@functools.cache
def _upserts_of(dialect: str) -> tuple[Any, Any, Any]:
    """(Q_ADD, Q_REGISTER, Q_NEW_SWEEP) of one dialect, built on first use: a SQLite queue never imports
    SQLAlchemy's PostgreSQL dialect (a tenth of a second of every worker's start)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    return _upserts(upsert)
Q_SUBMISSION = insert(submissions_t).values(
    sweep=bindparam("p_sweep"), created_at=bindparam("p_now"), description=bindparam("p_description"),
    tags=bindparam("p_tags"), grid=bindparam("p_grid"), overrides=bindparam("p_overrides"),
    provenance=bindparam("p_provenance")).returning(submissions_t.c.id)
Q_SWEEP_AXES_LOCKED = select(sweeps_t.c.axes).where(sweeps_t.c.name == bindparam("p_name")).with_for_update()
Q_SET_AXES = update(sweeps_t).where(sweeps_t.c.name == bindparam("p_name")).values(axes=bindparam("p_axes"))
Q_SEEN = update(workers_t).where(workers_t.c.worker == bindparam("p_worker")).values(  # a worker is alive
    seen_at=bindparam("p_now"), job_id=bindparam("p_current"))
Q_EXITED = update(workers_t).where(  # a worker is gone
    workers_t.c.worker == bindparam("p_worker"), workers_t.c.exited_at.is_(None)).values(
    exited_at=bindparam("p_now"), job_id=None)


# --- the operations --------------------------------------------------------------------------------
class JobOps(Reads):
    """The queue's writes: every one a single transaction through `_write`, every status change a
    guarded move. Built on Reads, which names the sweeps there when a command names a missing one."""

    def __init__(self, db: str, *, create: bool = False, lease_s: float = 60.0, upgrade: bool = False,
                 autocheckpoint: bool = True) -> None:
        self.lease_s = float(lease_s)
        self._reap_after, self._shortest_lease = 0.0, self.lease_s  # PostgreSQL's reap cadence (see claim)
        super().__init__(db, create=create, upgrade=upgrade, autocheckpoint=autocheckpoint)

    # --- submit ----------------------------------------------------------------------------------
    def add_submission(self, sweep: str, *, description: str | None, tags: Sequence[str], grid: str | None,
                       overrides: Sequence[str], provenance: Mapping[str, Any]) -> int:
        """Record one submit (the sweep's notes, the grid as submitted, where it came from); its id."""
        params = _p(sweep=sweep, description=description, tags=_dumps(list(tags)), grid=grid,
                    overrides=_dumps(list(overrides)), provenance=_dumps(dict(provenance)))
        return self._write(lambda tx: int(tx.one(Q_SUBMISSION, params | _p(now=tx.now()))[0]))  # type: ignore[index]

    def add_jobs(self, sweep: str, jobs: Sequence[tuple[str, dict] | tuple[str, dict, str | None]], *,
                 priority: int = 0, max_attempts: int = 3, axes: Sequence[str] | None = None,
                 signer: Callable[[dict], str] | None = None, submission: int | None = None) -> tuple[int, int]:
        """Add (config_hash, config) or (config_hash, config, fusion_key) as pending jobs; returns
        (added, already there). A job without a fusion key is never fused. `axes`: the keys the
        submitted grid varies, added in the same transaction to those the sweep records. `signer`:
        the signature stored with each new job (runner.signing.sign_config under the submitter's key).
        `submission`: the add_submission id the new jobs point to (jobs already there keep theirs)."""
        if not isinstance(sweep, str) or not sweep:
            raise UserError(f"a sweep needs a non-empty name, got {sweep!r}")
        if max_attempts < 1:
            raise UserError(f"max_attempts must be at least 1, got {max_attempts}")
        jobs = list(jobs)
        hashes = select(jobs_t.c.config_hash).where(jobs_t.c.sweep == sweep)
        known = self._read(lambda tx: {r[0] for r in tx.all(hashes)}) if jobs else set()
        now, status = self.clock(), S.PENDING.value  # rows are built before the write lock is taken
        rows = [(sweep, job[0], _dumps(job[1]), status, int(priority), 0, int(max_attempts), 0, now,
                 job[2] if len(job) > 2 else None, signer(job[1]) if signer else None, submission)
                for job in jobs if job[0] not in known]
        keys = ("sweep", "config_hash", "config", "status", "priority", "attempts", "max_attempts", "token",
                "created_at", "fusion_key", "signature", "submission")

        def body(tx: _Tx) -> int:
            added = tx.many(_upserts_of(tx.dialect.name)[0], keys, rows) if rows else 0  # ON CONFLICT: racing submits
            if axes is not None:
                _record_axes(tx, sweep, axes, now)
            return added
        added = self._write(body) if rows or axes is not None else 0
        return added, len(jobs) - added

    # --- workers ---------------------------------------------------------------------------------
    def claim(self, worker: str, *, host: str, device: str, sweep: str | None = None,
              lease_s: float | None = None) -> ClaimedJob | None:
        """Reap expired leases, then take the next pending job (highest priority, oldest), or None."""
        group = self.claim_group(worker, host=host, device=device, sweep=sweep, lease_s=lease_s, most=1)
        return group[0] if group else None

    def claim_group(self, worker: str, *, host: str, device: str, most: int, sweep: str | None = None,
                    lease_s: float | None = None) -> list[ClaimedJob]:
        """Reap expired leases, take the next pending job (highest priority, oldest) and, in the same
        transaction, up to `most` - 1 more pending jobs of its fusion key (none when it has no key;
        fewer when the key caps its groups, runner.train.fusion.group_cap):
        the jobs one fused step trains. Each is claimed on its own (its token, lease and attempt row).
        An empty list when nothing is pending.

        PostgreSQL: a process reaps at most every min(REAP_EVERY_S, its shortest lease / 4) seconds;
        finding expired leases scans the index entries of every job that ran since the last
        VACUUM (MVCC keeps them), which on every claim made a fast queue slower the longer it ran."""
        if most < 1:
            raise ValueError(f"a claim takes at least one job, not {most}")
        lease = self.lease_s if lease_s is None else lease_s
        self._shortest_lease = min(self._shortest_lease, lease)

        def body(tx: _Tx) -> list[ClaimedJob]:
            now = tx.now()
            if self.sqlite or time.monotonic() >= self._reap_after:
                self._reap(tx, now)
                self._reap_after = time.monotonic() + min(REAP_EVERY_S, self._shortest_lease / 4)
            params = _p(worker=worker, host=host, device=device, now=now, sweep=sweep, lease=now + lease)
            first = tx.one(Q_CLAIM if sweep is None else Q_CLAIM_SWEEP, params)
            if first is None:
                return []
            rows = [first]
            most_here = min(most, group_cap(first[6]) or most) if first[6] is not None else 1
            if most_here > 1:  # the same key implies the same sweep (it is hashed in)
                rows += sorted(tx.all(Q_CLAIM_FUSED, params | _p(key=first[6], most=most_here - 1)))
            claimed = []
            for job_id, token, attempts, max_attempts, job_sweep, config, key, signature, digest in rows:
                tx.run(Q_START_ATTEMPT, params | _p(job_id=job_id, token=token))
                claimed.append(ClaimedJob(job_id, job_sweep, json.loads(config), token, attempts, max_attempts, key,
                                          signature, digest))
            return claimed
        return self._write(body)

    def heartbeat(self, job_id: int, token: int, lease_s: float | None = None) -> bool:
        """Renew the lease; False when the job is no longer ours (stale token, cancelled, reaped)."""
        return not self.heartbeat_many([(job_id, token)], lease_s)

    def heartbeat_many(self, held: Sequence[tuple[int, int]], lease_s: float | None = None) -> set[int]:
        """Renew the leases of these (job id, token) pairs in one transaction (a fused group's members:
        one transaction per member per beat held the write lock a thousand times); returns the ids
        that are no longer ours."""
        lease = self.lease_s if lease_s is None else lease_s

        def body(tx: _Tx) -> set[int]:
            until = tx.now() + lease
            return {job_id for job_id, token in held
                    if tx.run(Q_HEARTBEAT, _p(job_id=job_id, fence=token, lease=until)).rowcount != 1}
        return self._write(body) if held else set()

    def record_checkpoints(self, written: Sequence[tuple[int, int, str]]) -> set[int]:
        """Record (job id, token, digest) of checkpoint files just written, in one transaction (a fused
        group's members at once); a later attempt resumes a file only if its digest is the one
        recorded here. Returns the ids that are no longer ours (nothing recorded for them)."""
        def body(tx: _Tx) -> set[int]:
            return {job_id for job_id, token, digest in written
                    if tx.run(Q_CHECKPOINTED, _p(job_id=job_id, fence=token, digest=digest)).rowcount != 1}
        return self._write(body) if written else set()

    def finish(self, job_id: int, token: int, outcome: JobOutcome) -> JobStatus:
        """Write a job's outcome in one transaction. A FAILED attempt with attempts left sends the job
        back to pending (error kept, no results), unless the outcome is permanent. Returns the status the job is in now; raises
        StaleTokenError when the job is no longer ours (nothing is written then)."""
        status = JobStatus(outcome.status)
        if status not in (S.DONE, S.FAILED, S.DIVERGED):
            raise TransitionError(f"job {job_id}: a job finishes done, failed or diverged, not {status}")
        ended = AttemptOutcome(status.value)  # the attempt ends as the job would: done, failed or diverged

        def body(tx: _Tx) -> JobStatus:
            now, target = tx.now(), status
            if status is S.FAILED and not outcome.permanent:
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
            tx.run(Q_END_ATTEMPT, _p(job_id=job_id, fence=token, now=now, outcome=ended.value, error=outcome.error,
                                     log=outcome.log, log_dropped=outcome.log_dropped if outcome.log is not None else None))
            return target
        return self._write(body)

    def release(self, job_id: int, token: int, *, reason: str, count_attempt: bool, log: str | None = None,
                log_dropped: int = 0) -> bool:
        """Hand a running job back: pending, or failed when counted and out of attempts.
        count_attempt=False for a graceful stop. `log`: what the attempt printed, kept with it.
        False when the job was no longer ours."""
        def body(tx: _Tx) -> bool:
            held = tx.one(Q_HELD, _p(job_id=job_id, fence=token))
            if held is not None:
                _requeue(tx, held, tx.now(), reason=reason, outcome=AttemptOutcome.RELEASED,
                         count_attempt=count_attempt, log=log, log_dropped=log_dropped)
            return held is not None
        return self._write(body)

    def release_worker(self, worker: str, *, reason: str, count_attempt: bool = True) -> list[int]:
        """A worker process died: its running jobs go back to pending (or failed when out of
        attempts) and it is marked exited. Returns the ids of those jobs."""
        def body(tx: _Tx) -> list[int]:
            now, held = tx.now(), tx.all(Q_OF_WORKER, _p(worker=worker))
            for row in held:
                _requeue(tx, row, now, reason=reason, outcome=AttemptOutcome.LOST, count_attempt=count_attempt)
            tx.run(Q_EXITED, _p(worker=worker, now=now))
            return [row[0] for row in held]
        return self._write(body)

    def reap_expired(self) -> int:
        """Running jobs whose lease ran out go back to pending (attempt counted) or to failed."""
        return self._write(lambda tx: self._reap(tx, tx.now()))

    @staticmethod
    def _reap(tx: _Tx, now: float) -> int:
        expired = tx.all(Q_EXPIRED, _p(now=now))
        for row in expired:
            _requeue(tx, row, now, reason="lease expired: its worker stopped renewing it",
                     outcome=AttemptOutcome.EXPIRED, count_attempt=True)
        return len(expired)

    def _check_named(self, sweep: str | None, job_ids: Sequence[int] | None) -> None:
        """UserError (before anything is written) when the sweep (NoSuchSweep) or one of the job ids
        is not in the database."""
        def body(tx: _Tx) -> tuple[bool, list[int]]:
            no_sweep = sweep is not None and tx.one(select(jobs_t.c.id).where(jobs_t.c.sweep == sweep).limit(1)) is None
            missing: list[int] = []
            for ids in _chunks(job_ids) if job_ids is not None else []:
                found = {r[0] for r in tx.all(select(jobs_t.c.id).where(jobs_t.c.id.in_(ids)))}
                missing += [i for i in ids if i not in found]
            return no_sweep, missing
        no_sweep, missing = self._read(body)
        if no_sweep and sweep is not None:
            raise NoSuchSweep(sweep, self.shown, self.sweeps())
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
            now, n = tx.now(), 0
            for ids in _chunks(job_ids):
                where = [jobs_t.c.sweep == sweep] if sweep is not None else []
                where += [jobs_t.c.id.in_(ids)] if ids is not None else []
                running = select(jobs_t.c.id).where(jobs_t.c.status == S.RUNNING.value, *where)
                tx.run(update(attempts_t).where(attempts_t.c.ended_at.is_(None), attempts_t.c.job_id.in_(running))
                       .values(ended_at=now, outcome=AttemptOutcome.CANCELLED.value))
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
    def register_worker(self, worker: str, *, host: str, pid: int, device: str, machine: str | None = None) -> None:
        """A worker (re)starts: its row in the registry, with the runner version it runs and the machine
        it runs on (default this one: one_machine.machine_id)."""
        params = _p(worker=worker, host=host, pid=pid, device=device, version=__version__,
                    machine=machine_id() if machine is None else machine)
        self._write(lambda tx: tx.run(_upserts_of(tx.dialect.name)[1], params | _p(now=tx.now())))

    def worker_seen(self, worker: str, *, job_id: int | None) -> None:
        """A worker is alive and holds job_id (None: idle)."""
        self._write(lambda tx: tx.run(Q_SEEN, _p(worker=worker, now=tx.now(), current=job_id)))

    def worker_exited(self, worker: str) -> None:
        """A worker is gone: its exit time, once."""
        self._write(lambda tx: tx.run(Q_EXITED, _p(worker=worker, now=tx.now())))
