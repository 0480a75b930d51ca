"""The readers: counts, results, metrics, arrays, attempt history and the views `runner status`,
`jobs`, `show` and results() build on. Each is one read transaction through `_read`."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from ...errors import NoSuchSweep, UserError
from ..states import AttemptOutcome, JobStatus
from .engine import Database, _chunks, _Tx
from .schema import _status_in, arrays_t, attempts_t, jobs_t, metrics_t, results_t, submissions_t, sweeps_t, workers_t

_WEIGHTS = "weights."  # the prefix of a job's snapshot arrays (runner.train.records: weights.<param>)


def _weights_prefix(member: str | None) -> str:
    """weights. for a job's own snapshots; <member>.weights. for a paired job's member's (runner.train.members)."""
    return _WEIGHTS if member is None else f"{member}.{_WEIGHTS}"

S = JobStatus
# the outcomes of attempts that ended badly: what recent_failures lists
_FAILURES = (AttemptOutcome.DIVERGED, AttemptOutcome.EXPIRED, AttemptOutcome.FAILED, AttemptOutcome.LOST)


class Reads(Database):
    """Every reader of the queue; none writes."""

    def clock(self) -> float:
        """The database's clock (seconds since the epoch): what the queue's timestamps and leases are
        measured on, so "how long ago" is asked of it, not of this host's clock."""
        return self._read(lambda tx: tx.now())

    def sweep_axes(self, sweep: str) -> list[str] | None:
        """The keys a sweep's grids vary (the union over its submits); None for a sweep submitted
        before runner kept them (schema 3 and older)."""
        row = self._read(lambda tx: tx.one(select(sweeps_t.c.axes).where(sweeps_t.c.name == sweep)))
        return None if row is None else json.loads(row[0])

    def submission_rows(self, sweep: str | None = None, *, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Submits, oldest first (of one sweep, or these ids): id, sweep, created_at, description, tags
        (list), grid (text), overrides (list), provenance (dict)."""
        stmt = select(submissions_t).order_by(submissions_t.c.id)
        if sweep is not None:
            stmt = stmt.where(submissions_t.c.sweep == sweep)
        if ids is not None:
            stmt = stmt.where(submissions_t.c.id.in_(sorted({int(i) for i in ids})))
        rows = self._read(lambda tx: tx.dicts(stmt))
        for row in rows:
            row.update(tags=json.loads(row["tags"]), overrides=json.loads(row["overrides"]),
                       provenance=json.loads(row["provenance"]))
        return rows

    def job_submissions(self, job_ids: Sequence[int]) -> dict[int, int]:
        """job id -> the id of the submit that added it (jobs submitted before schema 6 have none)."""
        out: dict[int, int] = {}
        for chunk in _chunks(sorted({int(i) for i in job_ids})):
            stmt = select(jobs_t.c.id, jobs_t.c.submission).where(jobs_t.c.id.in_(chunk), jobs_t.c.submission.is_not(None))
            out.update(self._read(lambda tx: dict(tx.all(stmt))))
        return out

    def sweeps(self) -> list[str]:
        """Sweep names, oldest first."""
        stmt = select(jobs_t.c.sweep).group_by(jobs_t.c.sweep).order_by(func.min(jobs_t.c.id))
        return [r[0] for r in self._read(lambda tx: tx.all(stmt))]

    def count_in(self, sweep: str | None, *states: JobStatus) -> int:
        """How many jobs (of one sweep, or of all) are in any of these states."""
        return sum(by_state.get(JobStatus(s).value, 0) for by_state in self.counts(sweep).values() for s in states)

    def any_pending(self, sweep: str | None = None) -> bool:
        """Whether a job (of one sweep, or of any) is pending: one index probe, cheap enough for an
        idle worker to ask several times a second (counts() scans the sweep)."""
        stmt = select(jobs_t.c.id).where(jobs_t.c.status == JobStatus.PENDING.value)
        stmt = (stmt if sweep is None else stmt.where(jobs_t.c.sweep == sweep)).limit(1)
        return self._read(lambda tx: tx.one(stmt)) is not None

    def count_hashes(self, sweep: str, hashes: Sequence[str]) -> int:
        """How many of these config hashes sweep `sweep` holds (what a dry-run submit would skip)."""
        wanted, n = sorted(set(hashes)), 0
        for i in range(0, len(wanted), 500):
            stmt = select(func.count()).where(jobs_t.c.sweep == sweep, jobs_t.c.config_hash.in_(wanted[i:i + 500]))
            n += self._read(lambda tx: tx.one(stmt))[0]
        return n

    def still_held(self, held: Sequence[tuple[int, int]]) -> set[int]:
        """Of these (job id, token) pairs, the ids still running under that token: a job not among
        them was cancelled, reaped or taken over. A read, cheap enough for a watchdog every second."""
        tokens = dict(held)
        out: set[int] = set()
        for ids in _chunks(list(tokens)):
            stmt = select(jobs_t.c.id, jobs_t.c.token).where(jobs_t.c.id.in_(ids), jobs_t.c.status == S.RUNNING.value)
            out |= {i for i, token in self._read(lambda tx: tx.all(stmt)) if tokens.get(i) == token}
        return out

    def tally(self, worker_prefix: str) -> dict[str, int]:
        """The jobs that workers whose ids start with `worker_prefix` (one pool's) made attempts on,
        by the status each is in now: what `runner workers` reports, and exits 1 on, at its end."""
        touched = select(attempts_t.c.job_id).where(attempts_t.c.worker.startswith(worker_prefix, autoescape=True))
        stmt = select(jobs_t.c.status, func.count()).where(jobs_t.c.id.in_(touched)).group_by(jobs_t.c.status)
        return {status: n for status, n in self._read(lambda tx: tx.all(stmt))}

    def check_sweep(self, name: str) -> None:
        """NoSuchSweep (naming the sweeps there) when no job belongs to sweep `name`: the one check
        every command that takes a sweep name runs before it reads or writes."""
        stmt = select(jobs_t.c.id).where(jobs_t.c.sweep == name).limit(1)
        if self._read(lambda tx: tx.one(stmt)) is None:
            raise NoSuchSweep(name, self.shown, self.sweeps())

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

    def stored_weights(self, job_id: int, step: int | str = "end",
                       member: str | None = None) -> tuple[int, dict[str, bytes]] | None:
        """A job's snapshot of its weights (its `weights.<param>` arrays; a paired job's member's
        `<member>.weights.<param>`) at `step` ("end": the last it stored): (the step, parameter name ->
        npy bytes), or None when it stored none there. Reads only the snapshot's own arrays."""
        steps = self.weight_steps(job_id, member)
        chosen = (steps[-1] if steps else None) if step == "end" else int(step)
        if chosen is None or chosen not in steps:
            return None
        prefix = _weights_prefix(member)
        stmt = select(arrays_t.c.name, arrays_t.c.data).where(
            arrays_t.c.job_id == job_id, arrays_t.c.step == chosen, arrays_t.c.name.startswith(prefix, autoescape=True))
        return chosen, {name[len(prefix):]: bytes(data) for name, data in self._read(lambda tx: tx.all(stmt))}

    def weight_history(self, job_id: int, member: str | None = None) -> list[tuple[int, dict[str, bytes]]]:
        """Every snapshot of a job's (or its member's) weights, oldest first: (step, parameter name ->
        npy bytes), in one read."""
        prefix = _weights_prefix(member)
        stmt = (select(arrays_t.c.step, arrays_t.c.name, arrays_t.c.data)
                .where(arrays_t.c.job_id == job_id, arrays_t.c.name.startswith(prefix, autoescape=True))
                .order_by(arrays_t.c.step))
        history: dict[int, dict[str, bytes]] = {}
        for step, name, data in self._read(lambda tx: tx.all(stmt)):
            history.setdefault(step, {})[name[len(prefix):]] = bytes(data)
        return list(history.items())

    def weight_steps(self, job_id: int, member: str | None = None) -> list[int]:
        """The steps at which a job (or its member) stored its weights (no array read)."""
        stmt = (select(arrays_t.c.step).distinct()
                .where(arrays_t.c.job_id == job_id, arrays_t.c.name.startswith(_weights_prefix(member), autoescape=True))
                .order_by(arrays_t.c.step))
        return [s for (s,) in self._read(lambda tx: tx.all(stmt))]

    def attempt_rows(self, job_id: int) -> list[dict]:
        """One job's history, oldest first: attempt (= its token), token, worker, host, device,
        started_at, ended_at, outcome, error."""
        stmt = select(attempts_t.c.token.label("attempt"), *attempts_t.c).where(attempts_t.c.job_id == job_id)
        return self._read(lambda tx: tx.dicts(stmt.order_by(attempts_t.c.token)))

    def worker_rows(self) -> list[dict]:
        """The worker registry: worker, host, pid, device, started_at, seen_at, job_id, exited_at."""
        return self._read(lambda tx: tx.dicts(select(workers_t).order_by(workers_t.c.started_at)))

    def workers_elsewhere(self, machine: str, live_s: float) -> list[dict]:
        """Workers not marked exited and seen within `live_s` seconds that run on another machine than
        `machine` (workers registered before schema 7 have none and are not counted): worker, host,
        seen_s_ago."""
        def body(tx: _Tx) -> list[dict]:
            now = tx.now()
            rows = tx.all(select(workers_t.c.worker, workers_t.c.host, workers_t.c.seen_at).where(
                workers_t.c.exited_at.is_(None), workers_t.c.seen_at >= now - live_s,
                workers_t.c.machine.is_not(None), workers_t.c.machine != machine).order_by(workers_t.c.seen_at.desc()))
            return [{"worker": worker, "host": host, "seen_s_ago": max(0.0, now - seen)} for worker, host, seen in rows]
        return self._read(body)

    def job_status(self, job_id: int) -> JobStatus:
        """A job's status now; UserError when there is no such job."""
        row = self._read(lambda tx: tx.one(select(jobs_t.c.status).where(jobs_t.c.id == job_id)))
        if row is None:
            raise UserError(f"no job {job_id} in {self.shown}")
        return JobStatus(row[0])

    # --- reading for results(), curves(), `runner jobs`, `runner show` and `runner status` ------------
    def job_table(self, sweep: str | None = None, *, job_ids: Sequence[int] | None = None,
                  statuses: Sequence[JobStatus] | None = None, limit: int | None = None) -> dict[str, list]:
        """Jobs ordered by id as columns (name -> list), for building frames in bulk: job_id, sweep,
        config and summary (JSON text; summary None until a results row exists), status, attempts,
        max_attempts, priority, worker, host, device, created_at, started_at, finished_at, error, signature,
        submission."""
        cols = (jobs_t.c.id.label("job_id"), jobs_t.c.sweep, jobs_t.c.config, results_t.c.summary, jobs_t.c.status,
                jobs_t.c.attempts, jobs_t.c.max_attempts, jobs_t.c.priority, jobs_t.c.worker, jobs_t.c.host,
                jobs_t.c.device, jobs_t.c.created_at, jobs_t.c.started_at, jobs_t.c.finished_at, jobs_t.c.error,
                jobs_t.c.signature, jobs_t.c.submission)
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
                .where(or_(*(at.outcome == o.value for o in _FAILURES)))
                .order_by(at.ended_at.desc(), at.job_id.desc()).limit(limit))
        stmt = stmt.where(jobs_t.c.sweep == sweep) if sweep is not None else stmt
        return self._read(lambda tx: tx.dicts(stmt))
