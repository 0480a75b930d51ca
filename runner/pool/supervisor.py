"""The supervisor: spawn K workers per device, replace the dead, stop cleanly on a signal.

Children are started with the `spawn` method (CUDA cannot be re-initialised in a forked child)
and receive only plain values. The supervisor never trains and never touches the GPU.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from ..errors import UserError
from ..queue.states import JobStatus
from ..queue.store import Store
from ..queue.store.one_machine import LIVE_S, machine_id
from ..signing import key_source, signing_key
from . import last_words, mps
from .bytecode import missing_bytecode_hint
from .checkpoint_dir import default_dir, usable_dir
from .devices import DEFAULT_WORKER_MIB, Device, check_fits
from .entry import RECYCLE_EXIT, WorkerOptions, worker_main
from .group_size import parse_fuse
from .progress import Progress

log = logging.getLogger("runner.supervisor")

QUICK_DEATH_S = 10.0     # a child dying this soon after start, repeatedly, is a crash loop
MAX_QUICK_DEATHS = 3


MIN_LEASE_S, MAX_LEASE_S = 1.0, 86_400.0  # a heartbeat every lease / 4; a day at most
MAX_PER_DEVICE = 64                        # worker processes on one device
MAX_CPU_WORKERS_PER_CORE = 4


@dataclass
class Slot:
    """One worker position (device + index); its process is replaced when it dies."""

    device: Device
    index: int
    generation: int = 0
    process: Any = None
    worker_id: str = ""
    started: float = 0.0
    quick_deaths: int = 0
    finished: bool = False
    jobs_before: int = 0  # jobs run by this slot's earlier (recycled) processes, for --max-jobs
    settings: Any = None  # the pipe its process waits on for its settings (None once they are sent)


@dataclass
class WorkerPool:
    db: str
    devices: list[Device]
    per_device: int = 1
    sweep: str | None = None
    max_jobs: int | None = None
    fuse: int | str = "auto"           # up to this many jobs of one fusion key trained as one batched model
    wait: bool = False
    lease_s: float = 60.0
    checkpoint_dir: str | None = None  # None: beside the database (runner.pool.checkpoint_dir.default_dir)
    host_id: str | None = None         # the host in worker ids, jobs and attempts; None: this machine's name
    mps: str = "auto"                  # CUDA MPS for several workers per GPU: auto, on or off (runner.mps)
    show_progress: bool = True
    log_level: str = "WARNING"
    slots: list[Slot] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.per_device < 1:
            raise UserError(f"--per-device must be at least 1, got {self.per_device}")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise UserError(f"--max-jobs must be at least 1, got {self.max_jobs}")
        self.fuse = parse_fuse(self.fuse)
        mps.check_mode(self.mps, self.devices)
        if not MIN_LEASE_S <= self.lease_s <= MAX_LEASE_S:  # nan fails both
            raise UserError(f"--lease must be a number of seconds from {MIN_LEASE_S:g} to {MAX_LEASE_S:g} "
                            f"(a heartbeat renews it every quarter), got {self.lease_s}")
        if self.per_device > MAX_PER_DEVICE:
            raise UserError(f"--per-device must be at most {MAX_PER_DEVICE} (worker processes per device), got {self.per_device}")
        self.ctx = mp.get_context("spawn")
        self.host = socket.gethostname() if self.host_id is None else self.host_id.strip()
        if not self.host or "/" in self.host or not self.host.isprintable():
            raise UserError(f"--host-id {self.host_id!r}: give a non-empty name without '/' (it starts each worker id)")
        self.stopping = False
        self.killing = False
        self.worker_env: dict[str, str] = {}  # what workers set before CUDA starts (a private MPS daemon's folders)
        self.progress: Progress | None = None  # the live table, once run() draws it
        self.slots = [Slot(d, i) for d in self.devices for i in range(self.per_device)]
        cpus, cpu_workers = os.cpu_count() or 1, sum(1 for s in self.slots if s.device.is_cpu)
        if cpu_workers > MAX_CPU_WORKERS_PER_CORE * cpus:
            raise UserError(f"--per-device {self.per_device} starts {cpu_workers} CPU workers on {cpus} cores; "
                            f"give at most {MAX_CPU_WORKERS_PER_CORE * cpus}")
        self.cpu_threads = max(1, cpus // max(1, cpu_workers))

    # --- children ---------------------------------------------------------------------------
    def prestart(self) -> None:
        """Start every worker process now: each imports torch and the loop (most of its start-up) while
        the supervisor checks the database and devices, then waits for its settings (`_start`)."""
        for slot in self.slots:
            self._spawn(slot)

    def call_off(self) -> None:
        """The checks failed or there is nothing to do: end the workers still waiting for their settings
        (they have claimed nothing; most are still importing torch, so they are not waited for)."""
        for slot in self.slots:
            if slot.settings is None or slot.process is None:
                continue
            self._send(slot, None)
            slot.process.kill()
            slot.process.join()
            last_words.tail(slot.worker_id)  # removes its file

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.worker_id = f"{self.host}/{os.getpid()}/{slot.device.label}/{slot.index}.{slot.generation}"
        theirs, slot.settings = self.ctx.Pipe(duplex=False)
        slot.process = self.ctx.Process(target=worker_main, args=(slot.device.visible, slot.worker_id, self.log_level,
                                                                  theirs), name=slot.worker_id, daemon=False)
        slot.process.start()
        theirs.close()
        slot.started = time.monotonic()

    def _start(self, slot: Slot) -> None:
        """Hand a waiting worker process its settings; start a fresh process first where its last one is done."""
        if slot.settings is None:  # its process ran (and exited): a new one
            self._spawn(slot)
        self._send(slot, WorkerOptions(
            db=self.db, checkpoint_dir=self.checkpoint_dir, worker_id=slot.worker_id, host=self.host,
            device_label=slot.device.label, visible=slot.device.visible,
            threads=self.cpu_threads if slot.device.is_cpu else 1, sweep=self.sweep,
            max_jobs=None if self.max_jobs is None else self.max_jobs - slot.jobs_before, fuse=self.fuse,
            memory_share=1.0 / self.per_device, pool_size=len(self.slots), wait=self.wait, lease_s=self.lease_s,
            log_level=self.log_level, env=tuple(sorted(self.worker_env.items())),
        ))

    @staticmethod
    def _send(slot: Slot, opts: WorkerOptions | None) -> None:
        """Send a waiting process its settings (None: leave); a process that died meanwhile is reaped as such."""
        if slot.settings is None:
            return
        try:
            slot.settings.send(opts)
        except OSError:  # it died while importing: the main loop reaps it
            pass
        slot.settings.close()
        slot.settings = None

    def _reap(self, slot: Slot, store: Store) -> None:
        """A child exited: return its job if it died, then decide whether to replace it."""
        slot.process.join()
        code = slot.process.exitcode
        last = last_words.tail(slot.worker_id)  # read (and removed) whatever the exit
        if code == 0:
            slot.finished = True
            return
        if code == RECYCLE_EXIT:  # it left after a failed job, its writes done: a fresh process goes on
            slot.jobs_before += sum(store.tally(slot.worker_id).values())
            log.info("worker %s recycled after a failed job", slot.worker_id)
            if self.stopping or (self.max_jobs is not None and slot.jobs_before >= self.max_jobs):
                slot.finished = True
            else:
                self._start(slot)
            return
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        said = f"; its last output:\n{last}" if last.strip() else ""
        released = store.release_worker(slot.worker_id, reason=f"worker process died ({how}){said}",
                                        count_attempt=not self.stopping)
        log.warning("worker %s died (%s)%s", slot.worker_id, how, f"; job {released} back in the queue" if released else "")
        if self.stopping:
            slot.finished = True
            return
        # A crash loop is a child that keeps failing on its own before taking any job (a broken
        # import, say). A SIGKILL comes from outside (a user, the OOM killer): always replace it.
        startup_failure = not released and code != -signal.SIGKILL and time.monotonic() - slot.started < QUICK_DEATH_S
        slot.quick_deaths = slot.quick_deaths + 1 if startup_failure else 0
        if slot.quick_deaths >= MAX_QUICK_DEATHS:
            log.error("worker on %s died %d times right after starting; not restarting it", slot.device.label, slot.quick_deaths)
            slot.finished = True
            return
        self._start(slot)

    # --- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.warning("stopping: running jobs are released at their next step (signal again to kill them)")
            if self.progress is not None:
                self.progress.keep_above()
            self._signal_children(signal.SIGTERM)
        else:
            self.killing = True
            self._signal_children(signal.SIGKILL)

    def _signal_children(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                try:
                    os.kill(slot.process.pid, sig)
                except ProcessLookupError:
                    pass

    # --- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Run until every worker has exited; 0 when they all ended cleanly or on a requested stop."""
        store = Store(self.db, lease_s=self.lease_s)
        try:
            daemon, note = mps.start(self.mps, self.devices, self.per_device)
        except BaseException:
            store.close()
            raise
        if daemon is not None:  # the workers, started before it, join it
            self.worker_env = dict(daemon.env)
        if self.show_progress and any(not d.is_cpu for d in self.devices):
            print(f"  {note}", file=sys.stderr, flush=True)
        log.info("%s", note)
        hint = missing_bytecode_hint("torch")
        if hint:
            log.warning("%s", hint)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        progress = self.progress = Progress(store, self.sweep, [d.label for d in self.devices], enabled=self.show_progress)
        try:
            for slot in self.slots:
                self._start(slot)
            while True:
                live = [s for s in self.slots if s.process is not None and not s.finished]
                if not live:
                    break
                ready = wait([s.process.sentinel for s in live], timeout=progress.interval)
                for slot in live:
                    if slot.process.sentinel in ready:
                        self._reap(slot, store)
                progress.update()
                store.checkpoint_wal()  # the workers' commits leave it to us (see Store's autocheckpoint)
            progress.update(final=True)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            store.close()
            if daemon is not None:
                for slot in self.slots:  # its clients first: quitting waits for them
                    if slot.process is not None:
                        slot.process.join(timeout=30)
                daemon.stop()
        crashed = [s for s in self.slots if s.quick_deaths >= MAX_QUICK_DEATHS]
        return self._report(crashed and not self.stopping)

    def _report(self, crashed: bool) -> int:
        """The one-line tally of the jobs this pool ran, and the exit code it implies: 1 when any of
        them ended failed (or the workers kept dying), else 0; diverged is a result, not a failure."""
        with Store(self.db) as store:
            tally = store.tally(f"{self.host}/{os.getpid()}/")
        order = ("done", "diverged", "failed", "pending", "running", "cancelled")
        parts = [f"{tally[s]} {s}" for s in order if tally.get(s)]
        code = 1 if crashed or tally.get("failed") else 0
        print(f"runner workers: {', '.join(parts) or 'no jobs run'} (exit {code})", file=sys.stderr, flush=True)
        return code


def run_workers(db: str, devices: list[Device], *, worker_mib: int = DEFAULT_WORKER_MIB, **kwargs: Any) -> int:
    """Start a pool of workers and block until the queue is drained (or a stop is requested).
    `worker_mib`: GPU memory one worker is assumed to need; K per GPU that cannot fit are refused."""
    pool = WorkerPool(db, devices, **kwargs)  # options first: a bad one is reported before the database is touched
    if worker_mib < 1:
        raise UserError(f"--worker-mib must be a positive number of MiB, got {worker_mib}")
    signed = signing_key() is not None  # a bad key setting is refused here, not by every worker
    pool.prestart()  # the workers import torch while the database and devices are checked
    try:
        code = _checked_run(pool, db, worker_mib, signed)
    except BaseException:
        pool.call_off()
        raise
    pool.call_off()  # (none left waiting when the pool ran)
    return code


def _one_machine(store: Store) -> None:
    """UserError when live workers of another machine use this SQLite queue: its locks do not reach
    across machines, so two of them could claim one job (runner.queue.store.one_machine)."""
    others = store.workers_elsewhere(machine_id(), LIVE_S)
    if others:
        first = others[0]
        raise UserError(f"{store.shown} has live workers on another machine ({len(others)}, e.g. {first['worker']}, "
                        f"seen {first['seen_s_ago']:.0f} s ago): a SQLite queue works on one machine only; for workers "
                        "on several machines use a PostgreSQL URL (postgresql+psycopg://user@host/dbname), or stop "
                        f"those workers (a worker not seen for {LIVE_S:.0f} s no longer counts)")


def _checked_run(pool: WorkerPool, db: str, worker_mib: int, signed: bool) -> int:
    """The checks before a pool runs (each refusal one line, before any job is claimed), then the run."""
    if signed:
        print(f"runner workers: verifying job signatures with the key of {key_source()} (unsigned or altered jobs "
              "fail without running)", file=sys.stderr, flush=True)
    with Store(db) as store:  # then the database, with its user-facing message, before any worker claims
        if pool.sweep is not None:
            store.check_sweep(pool.sweep)  # an unknown sweep is an error, as in every other command
        left = store.count_in(pool.sweep, JobStatus.PENDING, JobStatus.RUNNING)
        where = store.shown
        if store.sqlite:
            _one_machine(store)
    if not left and not pool.wait:  # nothing to do: say so instead of starting workers that find nothing
        what = f"sweep {pool.sweep!r}" if pool.sweep is not None else where
        print(f"runner workers: nothing pending or running in {what}; submit a grid first (runner submit grid.yaml)",
              file=sys.stderr, flush=True)
        return 0
    # then the checkpoint folder: one that cannot be used is refused now, not discovered by every job
    pool.checkpoint_dir = str(usable_dir(pool.checkpoint_dir if pool.checkpoint_dir is not None else default_dir(db)))
    check_fits(pool.devices, pool.per_device, worker_mib)
    return pool.run()
