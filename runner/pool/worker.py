"""A worker process's life after its device is pinned: claim a job, train it, write the results
back, repeat, with a heartbeat thread renewing the lease beside it.

Imported by runner.pool.entry once CUDA_VISIBLE_DEVICES is set, so it imports torch at the top.
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import time
import traceback
from pathlib import Path

import torch

from ..hashing import config_hash
from ..npy import to_npy
from ..queue.store import ClaimedJob, JobOutcome, JobStatus, StaleTokenError, Store
from ..train import checkpoints
from ..train.loop import RunStatus, train
from .checkpoint_dir import job_path
from .entry import WorkerOptions

log = logging.getLogger("runner.worker")

DRAIN_POLL_S = 0.2  # how often an idle worker checks whether the other workers' last jobs are done


class Worker:
    """The claim-train-write loop of one process, with a heartbeat thread beside it."""

    def __init__(self, opts: WorkerOptions, stop: threading.Event):
        self.opts, self.stop = opts, stop
        torch.set_num_threads(max(1, opts.threads))
        self.device = "cuda:0" if opts.visible else "cpu"
        self.host = opts.host
        self.store = Store(opts.db, lease_s=opts.lease_s, autocheckpoint=False)  # the supervisor checkpoints
        self.current: tuple[int, int] | None = None  # (job id, token) being trained
        self.lease_lost = threading.Event()
        self.parent = os.getppid()
        # Where every job of this process runs: fixed for the worker's life, so read once.
        self.where = {"device": opts.device_label, "host": self.host, "cuda_visible_devices": opts.visible}
        if self.device != "cpu":
            props = torch.cuda.get_device_properties(0)
            self.where["gpu"] = props.name
            if getattr(props, "uuid", None) is not None:  # which physical GPU, whatever the numbering
                self.where["gpu_uuid"] = f"GPU-{props.uuid}"
        _warm_up(self.device)

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
                    if self.opts.wait:
                        self.stop.wait(self.opts.poll_s)
                        continue
                    if not self._others_running():
                        break
                    # Jobs still running elsewhere may come back (their worker dies, their lease
                    # expires), so the queue is only empty once nothing is pending or running. Look
                    # often: the pool ends when the last of us has seen the last job finish.
                    self.stop.wait(min(self.opts.poll_s, DRAIN_POLL_S))
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
        return any(by_state.get(JobStatus.RUNNING.value, 0) for by_state in counts.values())

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
                        log.warning("job %d: heartbeat refused, lease lost (token %d is stale)", *current)
                        self.lease_lost.set()
                self.store.worker_seen(self.opts.worker_id, job_id=current[0] if current else None)
            except Exception as exc:  # a transient database error must not kill the heartbeat
                log.warning("heartbeat failed: %s", exc)

    def _run_job(self, job: ClaimedJob) -> None:
        self.lease_lost.clear()
        self.current = (job.id, job.token)
        ckpt = job_path(self.opts.checkpoint_dir, job.id, config_hash(job.config))
        try:
            outcome = self._train(job, ckpt)
            if outcome is None:  # stopped (released with a checkpoint) or taken over: nothing to write
                return
            try:
                self.store.finish(job.id, job.token, outcome)
            except StaleTokenError as exc:
                log.warning("job %d: write-back refused, another worker owns it now (%s)", job.id, exc)
                return
            if outcome.status != JobStatus.FAILED:  # a failed job keeps its checkpoint: its retry resumes there
                checkpoints.remove(ckpt)
        finally:
            self.current = None

    def _train(self, job: ClaimedJob, ckpt: Path) -> JobOutcome | None:
        """Train one claimed job; its JobOutcome, or None when there is nothing to write back."""
        t0 = time.perf_counter()
        if self.device != "cpu":
            torch.cuda.reset_peak_memory_stats()

        def should_stop() -> bool:
            if self.lease_lost.is_set():
                raise _LeaseLost
            return self.stop.is_set()

        error = None
        try:
            result = train(job.config, device=self.device, should_stop=should_stop, checkpoint_path=ckpt)
            if self.lease_lost.is_set():
                raise _LeaseLost
        except _LeaseLost:
            log.warning("job %d: write-back refused: token %d is stale (the lease expired and another worker "
                        "took the job, or it was cancelled); abandoned without writing", job.id, job.token)
            result = None
        except Exception:
            error = traceback.format_exc()
            log.warning("job %d failed: %s", job.id, error.strip().splitlines()[-1])
            result = None
        if result is None:
            # Outside the except block: the traceback no longer pins the job's tensors.
            _free_memory()
            if error is None:
                return None
            return JobOutcome(JobStatus.FAILED, {**self.where, "wall_s": round(time.perf_counter() - t0, 4)}, error=error)
        if result.status == RunStatus.STOPPED:
            try:
                self.store.release(job.id, job.token, reason="worker stopped", count_attempt=False)
                log.info("job %d: stopped at step %d, checkpoint saved, back in the queue", job.id, result.summary["steps"])
            except StaleTokenError as exc:
                log.warning("job %d: release refused, another worker owns it now (%s)", job.id, exc)
            return None
        summary = {**result.summary, **self.where}
        if self.device != "cpu":  # what --per-device packing has to fit
            summary["max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        status = JobStatus.DIVERGED if result.status == RunStatus.DIVERGED else JobStatus.DONE
        arrays = [(name, step, to_npy(a)) for name, step, a in result.arrays]
        return JobOutcome(status, summary, result.metrics, arrays, error=result.reason)


def _warm_up(device: str) -> None:
    """Pay once, before the first claim, what the first job would otherwise carry in its own
    wall_s (runner's trainloop is imported with this module): torch.optim's first use (it imports
    torch._dynamo: 1-3 s measured) and, on a GPU, the cuBLAS handle."""
    param = torch.zeros(4, 4, device=device, requires_grad=True)
    torch.optim.SGD([param], lr=0.0)
    (param @ param).sum().item()


class _LeaseLost(Exception):
    """Raised inside the trainloop when the heartbeat found our claim taken over: stop, write nothing."""


def _free_memory() -> None:
    """After a failed job (out of memory included), give cached GPU memory back before the next.

    The traceback held by the caller's frame keeps the job's tensors alive until collected."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        log.warning("GPU memory after clean-up: %.0f MiB allocated, %.0f MiB reserved",
                    torch.cuda.memory_allocated() / 2**20, torch.cuda.memory_reserved() / 2**20)
