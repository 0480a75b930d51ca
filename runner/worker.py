"""A worker process: claim a job, train it, write the results back, repeat.

`worker_main` is the spawn target. It takes plain values only and sets CUDA_VISIBLE_DEVICES
before torch is imported, so this module must not import torch (or anything that does) at the top.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("runner.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """Everything a worker needs, as plain picklable values."""

    db: str
    worker_id: str
    device_label: str   # 'cuda:1' or 'cpu', as shown to users and stored with results
    visible: str        # CUDA_VISIBLE_DEVICES for this process ('' for CPU workers)
    threads: int        # torch intra-op threads
    sweep: str | None = None
    max_jobs: int | None = None
    wait: bool = False
    poll_s: float = 1.0
    lease_s: float = 60.0
    log_level: str = "INFO"


def worker_main(opts: WorkerOptions) -> None:
    """Spawn target: pin the device, then run jobs until the queue is empty or we are told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = opts.visible
    if "torch" in sys.modules:  # pragma: no cover - a bug in how we were started
        raise RuntimeError("torch was imported before CUDA_VISIBLE_DEVICES was set")
    logging.basicConfig(level=opts.log_level, format=f"%(asctime)s [{opts.worker_id}] %(message)s", stream=sys.stderr)
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        if stop.is_set():  # second request: give up now; the supervisor returns the job to the queue
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    Worker(opts, stop).run()


class Worker:
    """The claim-train-write loop of one process, with a heartbeat thread beside it."""

    def __init__(self, opts: WorkerOptions, stop: threading.Event):
        import torch

        from .store import Store

        self.opts, self.stop = opts, stop
        torch.set_num_threads(max(1, opts.threads))
        self.device = "cuda:0" if opts.visible else "cpu"
        self.host = socket.gethostname()
        self.store = Store(opts.db, lease_s=opts.lease_s)
        self.current: tuple[int, int] | None = None  # (job id, token) being trained
        self.lease_lost = threading.Event()
        self.parent = os.getppid()
        # Where every job of this process runs: fixed for the worker's life, so read once.
        self.where = {"device": opts.device_label, "host": self.host, "cuda_visible_devices": opts.visible}
        if self.device != "cpu":
            self.where["gpu"] = torch.cuda.get_device_name(0)

    def run(self) -> None:
        self.store.register_worker(self.opts.worker_id, host=self.host, pid=os.getpid(), device=self.opts.device_label)
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        done = 0
        try:
            while not self.stop.is_set():
                job = self.store.claim(self.opts.worker_id, host=self.host, device=self.opts.device_label,
                                       sweep=self.opts.sweep, lease_s=self.opts.lease_s)
                if job is None:
                    if not self.opts.wait and not self._others_running():
                        break
                    # Jobs still running elsewhere may come back (their worker dies, their lease
                    # expires), so the queue is only empty once nothing is pending or running.
                    self.stop.wait(self.opts.poll_s)
                    continue
                self._run_job(job)
                done += 1
                if self.opts.max_jobs and done >= self.opts.max_jobs:
                    break
        finally:
            self.stop.set()
            self.store.worker_exited(self.opts.worker_id)
            self.store.close()
        log.debug("exiting after %d jobs", done)

    def _others_running(self) -> bool:
        counts = self.store.counts(self.opts.sweep)
        return any(by_state.get("running", 0) for by_state in counts.values())

    def _heartbeat(self) -> None:
        """Renew the current job's lease; notice a lost lease or a dead supervisor."""
        interval = max(0.05, self.opts.lease_s / 4)
        while not self.stop.wait(interval):
            if os.getppid() != self.parent:  # the supervisor died: stop and hand the job back
                log.warning("supervisor is gone; stopping")
                self.stop.set()
                return
            current = self.current
            try:
                if current is not None and not self.store.heartbeat(*current, lease_s=self.opts.lease_s):
                    if self.current == current:
                        log.warning("job %d: lease lost (token %d is stale); abandoning it", *current)
                        self.lease_lost.set()
                self.store.worker_seen(self.opts.worker_id, job_id=current[0] if current else None)
            except Exception as exc:  # a transient database error must not kill the heartbeat
                log.warning("heartbeat failed: %s", exc)

    def _run_job(self, job: Any) -> None:
        import torch

        from .npy import to_npy
        from .store import JobOutcome, JobStatus, StaleTokenError
        from .trainloop import train

        self.lease_lost.clear()
        self.current = (job.id, job.token)
        t0 = time.perf_counter()
        where = self.where
        try:
            result = train(job.config, device=self.device, should_stop=lambda: self.stop.is_set() or self.lease_lost.is_set())
        except Exception:
            error = traceback.format_exc()
            log.warning("job %d failed: %s", job.id, error.strip().splitlines()[-1])
            _free_memory(torch)
            outcome = JobOutcome(JobStatus.FAILED, {**where, "wall_s": round(time.perf_counter() - t0, 4)}, error=error)
        else:
            if self.lease_lost.is_set():
                self.current = None
                return
            if result.status == "stopped":
                self.current = None
                self.store.release(job.id, job.token, reason="worker stopped", count_attempt=False)
                log.info("job %d: stopped at step %d and released", job.id, result.summary["steps"])
                return
            status = JobStatus.DIVERGED if result.status == "diverged" else JobStatus.DONE
            arrays = [(name, step, to_npy(a)) for name, step, a in result.arrays]
            outcome = JobOutcome(status, {**result.summary, **where}, result.metrics, arrays, error=result.reason)
        try:
            self.store.finish(job.id, job.token, outcome)
        except StaleTokenError as exc:
            log.warning("job %d: write-back refused, another worker owns it now (%s)", job.id, exc)
        finally:
            self.current = None


def _free_memory(torch: Any) -> None:
    """After a failed job (out of memory included), give cached GPU memory back before the next."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
