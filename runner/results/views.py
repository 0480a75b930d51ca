"""Plain-text views of a database for the terminal: `runner jobs`, `runner show JOB`, `runner status`.

Each view is a function from an open Store to a list of lines, so the CLI only prints them and tests
can read them without a subprocess. Read-only.
"""
from __future__ import annotations

import datetime
import json
import sys
import time
from typing import Any, Sequence, TextIO

from ..errors import UserError, error_line
from ..queue.store import JobStatus, Store
from ..text import format_duration, printable

WINDOW_S = 300.0      # throughput is measured over the last 5 minutes (or since the sweep started)
FAILURES_SHOWN = 5
WORKERS_SHOWN = 20
STALE_S = 120.0       # a worker not seen for this long is marked stale (heartbeats come every lease/4)
CONFIG_WIDTH = 60
ERROR_WIDTH = 70
LOG_TAIL_LINES = 10   # lines of the latest attempt's log `runner show` prints


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> list[str]:
    """Aligned columns: text left, the columns named in `right` (numbers) right; None shows as '-'."""
    cells = [list(header), *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.rjust(w) if h in right else c.ljust(w) for h, c, w in zip(header, row, widths)).rstrip()
            for row in cells]


def _clip(text: str | None, width: int) -> str | None:
    return text if text is None or len(text) <= width else text[:width - 3] + "..."


def _value(value: Any) -> str:
    """A config or summary value as written: exact numbers, lists and dicts as compact JSON."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _ago(t: float | None, now: float) -> str:
    return "-" if t is None else f"{format_duration(max(0.0, now - t))} ago"


def _check_sweep(store: Store, sweep: str | None, counts: dict[str, dict[str, int]]) -> None:
    """NoSuchSweep when a sweep is named and has no jobs (counts: the store's counts for it)."""
    if sweep is not None and sweep not in counts:
        store.check_sweep(sweep)


def _varying_keys(store: Store, sweeps: Sequence[str]) -> dict[str, list[str]]:
    """Per sweep, its config keys that take more than one value (in first-seen order): the grid
    axes. One pass over the sweep's configs, and a key stops being compared once it varies."""
    out = {}
    for name in sweeps:
        configs = json.loads("[" + ",".join(store.config_table(name)["config"]) + "]")
        first, varying = configs[0], {}
        steady = list(first)
        for config in configs:
            if config.keys() != first.keys():
                odd = [k for k in first if k not in config] + [k for k in config if k not in first]
                varying.update(dict.fromkeys(odd))
                steady = [k for k in steady if k not in varying]
            changed = [k for k in steady if config.get(k) != first[k]]
            if changed:
                varying.update(dict.fromkeys(changed))
                steady = [k for k in steady if k not in varying]
        out[name] = [k for k in first if k in varying] + [k for k in varying if k not in first]
    return out


def jobs_lines(store: Store, sweep: str | None = None, states: Sequence[str] = (), limit: int = 50) -> list[str]:
    """`runner jobs`: id, sweep, status, attempts, device, wall_s, the config keys that vary, error line."""
    counts = store.counts(sweep)
    _check_sweep(store, sweep, counts)
    statuses = [JobStatus(s) for s in states]
    total = sum(n for by_state in counts.values() for s, n in by_state.items() if not states or s in states)
    t = store.job_table(sweep, statuses=statuses or None, limit=limit)
    what = "/".join(states) + " " if states else ""
    if not t["job_id"]:
        return [f"(no {what}jobs{f' in sweep {sweep!r}' if sweep else ''} in {store.shown})"]
    varying = _varying_keys(store, list(dict.fromkeys(t["sweep"])))
    rows = []
    for i, job_id in enumerate(t["job_id"]):
        config, summary = json.loads(t["config"][i]), json.loads(t["summary"][i] or "{}")
        short = " ".join(f"{k}={_value(config[k])}" for k in varying[t["sweep"][i]] if k in config)
        rows.append([job_id, t["sweep"][i], t["status"][i], f"{t['attempts'][i]}/{t['max_attempts'][i]}",
                     summary.get("device") or t["device"][i], summary.get("wall_s"), _clip(short, CONFIG_WIDTH) or "-",
                     _clip(error_line(t["error"][i]), ERROR_WIDTH)])
    header = ["id", "sweep", "status", "attempts", "device", "wall_s", "config", "error"]
    if not any(r[-1] for r in rows):
        header, rows = header[:-1], [r[:-1] for r in rows]
    lines = table(header, rows, right=("id", "attempts", "wall_s"))
    if total > len(rows):
        lines.append(f"({len(rows):,} of {total:,} {what}jobs shown: raise --limit, or narrow with --state, --sweep)")
    return lines


def show_lines(store: Store, job_id: int, now: float | None = None) -> list[str]:
    """`runner show JOB`: config, attempts and outcomes, summary, metrics, arrays, the error in full."""
    now = store.clock() if now is None else now
    t = store.job_table(job_ids=[job_id])
    if not t["job_id"]:
        raise UserError(f"no job {job_id} in {store.shown}: list the jobs with `runner jobs`")
    job = {k: v[0] for k, v in t.items()}
    config, summary = json.loads(job["config"]), json.loads(job["summary"] or "{}")
    where = f" on {job['device']}@{job['host']}" if job["device"] else ""
    signed = "  signed" if job["signature"] else ""  # by the submitter's key (workers holding it verify)
    lines = [f"job {job_id}  sweep {job['sweep']}  {job['status']}  attempt {job['attempts']} of {job['max_attempts']}"
             f"  priority {job['priority']}{signed}",
             f"created {_when(job['created_at'])}   started {_when(job['started_at'])}   "
             f"finished {_when(job['finished_at'])}{where}", "", "config:"]
    lines += [f"  {k}: {_value(v)}" for k, v in config.items()]
    lines += _submitted_lines(store, job["submission"])
    attempts = store.attempt_rows(job_id)
    lines += ["", "attempts:" if attempts else "attempts: none yet"]
    rows = []
    for a in attempts:
        took = format_duration((a["ended_at"] or now) - a["started_at"]) if a["started_at"] else "-"
        outcome = a["outcome"] or (JobStatus.RUNNING.value if job["status"] == JobStatus.RUNNING.value else "-")
        rows.append([a["attempt"], a["worker"], a["device"], _when(a["started_at"]), took, outcome,
                     _clip(error_line(a["error"]), ERROR_WIDTH)])
    if attempts:
        lines += ["  " + line for line in table(["#", "worker", "device", "started", "took", "outcome", "error"],
                                                rows, right=("#", "took"))]
    lines += ["", "summary:" if summary else "summary: none (the job has not finished)"]
    lines += [f"  {k}: {_value(v) if v is not None else '-'}" for k, v in summary.items()]
    metrics = store.metric_summary(job_id)
    lines += ["", "metrics:" if metrics else "metrics: none"]
    if metrics:
        rows = [[m["name"], m["points"], f"{m['first_step']}..{m['last_step']}", m["last_value"]] for m in metrics]
        lines += ["  " + line for line in table(["name", "points", "steps", "last"], rows, right=("points", "last"))]
    arrays = store.array_summary(job_id)
    lines += ["", "arrays:" if arrays else "arrays: none"]
    if arrays:
        rows = [[a["name"], a["steps"], f"{a['first_step']}..{a['last_step']}", f"{(a['bytes'] or 0) / 1024:.1f} KiB"]
                for a in arrays]
        lines += ["  " + line for line in table(["name", "steps", "at", "size"], rows, right=("steps", "size"))]
    error, label = job["error"], "error:"
    if not error:
        earlier = [a for a in attempts if a["error"]]
        error, label = (earlier[-1]["error"], f"error of attempt {earlier[-1]['attempt']}:") if earlier else (None, "")
    if error:
        lines += ["", label, *["  " + line for line in error.rstrip().splitlines()]]
    return lines + _log_tail(job_id, attempts)


def _log_tail(job_id: int, attempts: list[dict], lines: int = LOG_TAIL_LINES) -> list[str]:
    """The end of the latest attempt's log, for `runner show`; `runner logs` prints all that was kept."""
    logged = [a for a in attempts if a["log"] is not None]
    if not logged:
        return []
    a = logged[-1]
    text = _as_shown(a["log"])
    if not text:
        return ["", f"log of attempt {a['attempt']}: empty (the job printed nothing)"]
    shown = f"last {lines} of {len(text)} lines" if len(text) > lines else f"{len(text)} line{'s' * (len(text) > 1)}"
    return ["", f"log of attempt {a['attempt']} ({shown}; all of it: runner logs {job_id}):",
            *["  " + line for line in text[-lines:]]]


def _as_shown(log: str) -> list[str]:
    """A log's lines as a terminal would have left them: a line a progress bar redrew with carriage
    returns shows its last state only."""
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in log.rstrip("\n").split("\n")] if log.strip() else []


def log_lines(store: Store, job_id: int, attempt: int | None = None) -> list[str]:
    """`runner logs JOB [--attempt N]`: what the attempt printed (stdout, stderr, warnings, log records;
    the latest attempt that kept a log by default), under a line that says which attempt and what was
    dropped, then its error if it failed."""
    store.job_status(job_id)  # UserError when there is no such job
    attempts = store.attempt_rows(job_id)
    if attempt is not None:
        chosen = [a for a in attempts if a["attempt"] == attempt]
        if not chosen:
            known = ", ".join(str(a["attempt"]) for a in attempts) or "none yet"
            raise UserError(f"job {job_id} has no attempt {attempt} (its attempts: {known}): pick one with --attempt")
        a = chosen[0]
    else:
        logged = [a for a in attempts if a["log"] is not None]
        if not logged:
            why = ("it has not run yet" if not attempts else "its attempt is still running: the log is stored when it ends"
                   if attempts[-1]["ended_at"] is None else "its attempts kept none (they ran before runner kept logs, or "
                   "their worker died: see `runner show` for its last output)")
            return [f"job {job_id}: no log ({why})"]
        a = logged[-1]
    if a["log"] is None:
        return [f"job {job_id}, attempt {a['attempt']}: no log (still running, or its worker died: see `runner show`)"]
    dropped = f", the first {a['log_dropped']:,} bytes dropped" if a["log_dropped"] else ""
    head = f"# job {job_id}, attempt {a['attempt']} of {len(attempts)}: {a['outcome'] or 'running'} on {a['worker']}{dropped}"
    lines = [head, *_as_shown(a["log"])]
    if a["error"] and a["outcome"] != "done":
        lines += [f"# {a['outcome']}:", *a["error"].rstrip().splitlines()]
    return lines


def _submitted_lines(store: Store, submission: int | None) -> list[str]:
    """Where a job's submit came from (runner.provenance), for `runner show`."""
    rows = store.submission_rows(ids=[submission]) if submission is not None else []
    if not rows:
        return ["", "submitted: no record (before runner kept provenance)"]
    row = rows[0]
    p = row["provenance"]
    git = "not in a git repository" if p.get("git_commit") is None else p["git_commit"] + (
        f" (dirty: uncommitted changes, diff sha256 {p['git_diff_sha256'][:12]})" if p.get("git_dirty") else " (clean)")
    lines = ["", f"submitted {_when(row['created_at'])} on {p.get('host')} (submit {row['id']} of sweep {row['sweep']}):",
             f"  command: {p.get('command')}", f"  folder: {p.get('cwd')}", f"  git: {git}",
             f"  versions: runner {p.get('runner_version')}, torch {p.get('torch_version')}, "
             f"Python {p.get('python_version')}"]
    if row["overrides"]:
        lines.append("  overrides: " + " ".join(row["overrides"]))
    if row["description"] or row["tags"]:
        lines.append(f"  notes: {row['description'] or '-'}" + (f"  [tags: {', '.join(row['tags'])}]" if row["tags"] else ""))
    return lines


def sweep_notes(store: Store) -> dict[str, dict[str, Any]]:
    """Per sweep: its latest description and the union of its tags over its submits, and how many submits."""
    notes: dict[str, dict[str, Any]] = {}
    for row in store.submission_rows():
        entry = notes.setdefault(row["sweep"], {"description": None, "tags": [], "submits": 0, "first": row["created_at"]})
        entry["submits"] += 1
        entry["description"] = row["description"] or entry["description"]
        entry["tags"] += [t for t in row["tags"] if t not in entry["tags"]]
    return notes


def sweeps_lines(store: Store) -> list[str]:
    """`runner sweeps`: every sweep with its job counts, submits, tags and description."""
    counts, notes = store.counts(None), sweep_notes(store)
    if not counts:
        return [f"(no sweeps in {store.shown})"]
    rows = []
    for name, by_state in counts.items():
        note = notes.get(name, {})
        done = by_state.get(JobStatus.DONE.value, 0)
        failed = sum(by_state.get(s.value, 0) for s in (JobStatus.FAILED, JobStatus.DIVERGED))
        left = by_state.get(JobStatus.PENDING.value, 0) + by_state.get(JobStatus.RUNNING.value, 0)
        rows.append([name, sum(by_state.values()), done, failed, left, note.get("submits", "-"),
                     _when(note["first"]) if note else "-", ", ".join(note.get("tags", [])) or "-",
                     _clip(note.get("description") or "-", 60)])
    return table(["sweep", "jobs", "done", "failed", "left", "submits", "first submit", "tags", "description"], rows,
                 right=("jobs", "done", "failed", "left", "submits"))


def status_lines(store: Store, sweep: str | None = None, now: float | None = None) -> list[str]:
    """`runner status`: jobs per state per sweep, throughput and ETA, live workers, latest failures."""
    now = store.clock() if now is None else now
    counts = store.counts(sweep)
    _check_sweep(store, sweep, counts)
    states = [s.value for s in JobStatus]
    width = max([len("sweep"), *map(len, counts)])
    lines = [f"{'sweep':<{width}}  " + "  ".join(f"{s:>9}" for s in states) + "      total"]
    for name, by_state in counts.items():
        total = sum(by_state.values())
        lines.append(f"{name:<{width}}  " + "  ".join(f"{by_state.get(s, 0):>9}" for s in states) + f"  {total:>9}")
    if not counts:
        return [*lines, f"(no jobs in {store.shown})"]
    notes = sweep_notes(store)
    described = [(name, notes[name]) for name in counts if notes.get(name, {}).get("description") or
                 notes.get(name, {}).get("tags")]
    if described:
        lines += ["", "notes:"] + [_clip(f"  {name}: {n['description'] or '-'}" + (
            f"  [{', '.join(n['tags'])}]" if n["tags"] else ""), 160) for name, n in described]

    activity = store.activity(now - WINDOW_S, sweep)
    workers = store.worker_rows()
    live = sorted((w for w in workers if w["exited_at"] is None), key=lambda w: -(w["seen_at"] or 0))
    working = any(w["seen_at"] is not None and now - w["seen_at"] <= STALE_S for w in live)
    rows = []
    for name, by_state in counts.items():
        act = activity.get(name, {"finished": 0, "first_started": None})
        remaining = by_state[JobStatus.PENDING.value] + by_state[JobStatus.RUNNING.value]
        span = min(WINDOW_S, now - act["first_started"]) if act["first_started"] is not None else 0.0
        rate = act["finished"] / span if span > 0 else None
        if not remaining:
            eta = "done"
        elif not working:  # an ETA needs someone to do the work
            eta = "no live worker"
        else:
            eta = format_duration(remaining / rate) if rate else "-"
        rows.append([name, act["finished"], None if rate is None else f"{rate * 60:.1f}", remaining, eta])
    lines += ["", f"throughput over the last {format_duration(WINDOW_S)}:"]
    lines += ["  " + line for line in table(["sweep", "finished", "jobs/min", "left", "ETA"], rows,
                                            right=("finished", "jobs/min", "left"))]

    current = {r["worker"]: r["job_id"] for r in store.running_jobs()}
    exited = len(workers) - len(live)
    lines += ["", f"workers: {len(live)} live" + (f", {exited} exited" if exited else "") + (":" if live else "")]
    rows = []
    for w in live[:WORKERS_SHOWN]:
        age = now - w["seen_at"] if w["seen_at"] is not None else None
        beat = "-" if age is None else format_duration(max(0.0, age)) + " ago" + (" (stale?)" if age > STALE_S else "")
        rows.append([w["host"], w["device"], w["pid"], current.get(w["worker"], w["job_id"]), beat])
    if rows:
        header = ["host", "device", "pid", "job", "heartbeat"]
        lines += ["  " + line for line in table(header, rows, right=("pid", "job"))]
    if len(live) > WORKERS_SHOWN:
        lines.append(f"  (+{len(live) - WORKERS_SHOWN} more)")

    failures = store.recent_failures(sweep, FAILURES_SHOWN)
    lines += ["", "last failures:" if failures else "last failures: none"]
    for f in failures:
        where = f" on {f['device']}@{f['host']}" if f["device"] else ""
        lines.append(_clip(f"  job {f['job_id']} ({f['sweep']}) attempt {f['attempt']} {f['outcome']} "
                           f"{_ago(f['ended_at'], now)}{where}: {error_line(f['error']) or '-'}", 160))
    return lines


def watch(store: Store, sweep: str | None, interval: float, stream: TextIO | None = None) -> None:
    """Redraw the status every `interval` seconds until Ctrl-C (which ends it quietly). On a terminal
    the frame is drawn in place; into a file or pipe, frames follow one another."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    try:
        while True:
            frame = [printable(line) for line in [f"runner status  {store.shown}  {datetime.datetime.now():%H:%M:%S}  "
                     f"(every {interval:g} s; Ctrl-C to stop)", "", *status_lines(store, sweep)]]
            if tty:  # home, then each line over the old one, then clear what is left below
                stream.write("\x1b[H" + "".join(line + "\x1b[K\n" for line in frame) + "\x1b[J")
            else:
                stream.write("\n".join(frame) + "\n\n")
            stream.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        stream.write("\n")
        stream.flush()
