"""A worker process's life after its device is pinned: claim a job, train it, write the results
back, repeat, with a heartbeat thread renewing the lease beside it.

Imported by runner.pool.entry once CUDA_VISIBLE_DEVICES is set, so it imports torch at the top.
"""
from __future__ import annotations

import gc
import logging
import os
import platform
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import UserError
from ..hashing import config_hash
from ..npy import from_npy, to_npy
from ..queue.store import ClaimedJob, JobOutcome, JobStatus, StaleTokenError, Store
from ..signing import signature_problem, signing_key
from ..train import checkpoints
from ..train.fused import train_group
from ..train.fused_memory import members_that_fit
from ..train.loop import RunStatus, TrainResult, train
from ..train.optim import skip_dynamo_import
from . import job_output
from .checkpoint_dir import job_path
from .entry import WorkerOptions
from .group_size import MEMORY_FRACTION, most_jobs
from .job_output import JobLog
from .output_limits import oversized
from .watchdog import WATCH_S, Watchdog

log = logging.getLogger("runner.worker")

DRAIN_POLL_S = 0.2  # how often an idle worker checks whether the other workers' last jobs are done
IDLE_POLL_MIN_S = 0.02  # --wait: the first look for new jobs after the queue ran dry (then backing off to poll_s)


class Worker:
    """The claim-train-write loop of one process, with a heartbeat thread beside it."""

    def __init__(self, opts: WorkerOptions, stop: threading.Event):
        self.opts, self.stop = opts, stop
        torch.set_num_threads(max(1, opts.threads))
        self.device = "cuda:0" if opts.visible else "cpu"
        self.host = opts.host
        self.store = Store(opts.db, lease_s=opts.lease_s, autocheckpoint=False)  # the supervisor checkpoints
        self.current: list[tuple[int, int]] = []  # (job id, token) of the jobs being trained
        self.lost: set[int] = set()  # ids of those whose lease the heartbeat found taken over
        self.parent = os.getppid()
        self.recycle = False  # set after a failed job: this process leaves and the supervisor starts a fresh one
        # Where every job of this process runs: fixed for the worker's life, so read once.
        self.where = {"device": opts.device_label, "host": self.host, "cuda_visible_devices": opts.visible,
                      # what ran the job (the submit's provenance says where the grid came from)
                      "runner_version": __version__, "torch_version": torch.__version__,
                      "cuda_version": torch.version.cuda, "python_version": platform.python_version()}
        if self.device != "cpu":
            props = torch.cuda.get_device_properties(0)
            self.where["gpu"] = props.name
            if getattr(props, "uuid", None) is not None:  # which physical GPU, whatever the numbering
                self.where["gpu_uuid"] = f"GPU-{props.uuid}"
        self.watchdog = Watchdog(self.store, self.where, stop)
        self.key = signing_key()  # the supervisor checked the setting; None: jobs are not verified
        skip_dynamo_import()  # torch.optim's first calls would import torch._dynamo (2-3 s); runner never compiles
        _warm_up(self.device)

    def run(self) -> None:
        self.store.register_worker(self.opts.worker_id, host=self.host, pid=os.getpid(), device=self.opts.device_label)
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        done = 0
        try:
            while not self.stop.is_set():
                most = most_jobs(self.opts.fuse, on_cpu=self.device == "cpu", pending=self._pending(),
                                 workers=self.opts.pool_size)
                if self.opts.max_jobs:
                    most = min(most, self.opts.max_jobs - done)
                jobs = self.store.claim_group(self.opts.worker_id, host=self.host, device=self.opts.device_label,
                                              most=most, sweep=self.opts.sweep, lease_s=self.opts.lease_s)
                if not jobs:
                    if self.opts.wait:
                        self._wait_for_work()
                        continue
                    if not self._others_running():
                        break
                    # Jobs still running elsewhere may come back (their worker dies, their lease
                    # expires), so the queue is only empty once nothing is pending or running. Look
                    # often: the pool ends when the last of us has seen the last job finish.
                    self.stop.wait(min(self.opts.poll_s, DRAIN_POLL_S))
                    continue
                jobs = self._what_fits(self._genuine(jobs))
                if not jobs:
                    continue
                self.recycle = self._run_jobs(jobs)
                done += len(jobs)
                if self.recycle or (self.opts.max_jobs and done >= self.opts.max_jobs):
                    break
        finally:
            self.stop.set()
            self.store.worker_exited(self.opts.worker_id)
            self.store.close()
        log.debug("exiting after %d jobs", done)

    def _what_fits(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """On a GPU with --fuse auto, the claimed jobs one group can hold in this worker's share of
        the GPU's memory; the others go back to the queue unstarted (no attempt used)."""
        if len(jobs) < 2 or self.device == "cpu" or self.opts.fuse != "auto":
            return jobs
        budget = torch.cuda.get_device_properties(0).total_memory * self.opts.memory_share * MEMORY_FRACTION
        try:
            fit = members_that_fit([job.config for job in jobs], self.device, budget)
        except Exception as exc:  # noqa: BLE001 - a job that cannot even be built fails in training, with its traceback
            log.debug("memory estimate failed (%s); the group is trained as claimed", exc)
            return jobs
        for job in jobs[fit:]:
            try:
                self.store.release(job.id, job.token, reason=f"a fused group of {fit} fills this worker's GPU memory",
                                   count_attempt=False)
            except StaleTokenError:
                pass
        if fit < len(jobs):
            log.info("fused group of %d: %d claimed jobs would not fit in memory, back in the queue", fit, len(jobs) - fit)
        return jobs[:fit]

    def _wait_for_work(self) -> None:
        """--wait with nothing to claim: look for a pending job with one cheap read, every
        IDLE_POLL_MIN_S at first and half as often each time nothing came, up to `poll_s`; so a
        submit reaches an idle pool within `poll_s` (0.4 s) and a long-idle pool costs a few reads a second."""
        delay = IDLE_POLL_MIN_S
        while not self.stop.wait(delay):
            try:
                if self.store.any_pending(self.opts.sweep):
                    return
            except Exception as exc:  # noqa: BLE001 - a database away for a moment: keep waiting, claim later
                log.warning("looking for pending jobs failed: %s", exc)
            delay = min(delay * 2, self.opts.poll_s)

    def _genuine(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """With a signing key, the claimed jobs whose signature holds; each other one fails now, for
        good, before anything its config names is imported (runner.signing)."""
        if self.key is None:
            return jobs
        kept = []
        for job in jobs:
            problem = signature_problem(self.key, job.config, job.signature)
            if problem is None:
                kept.append(job)
                continue
            log.warning("job %d: %s", job.id, problem)
            try:
                self.store.finish(job.id, job.token, JobOutcome(JobStatus.FAILED, dict(self.where), error=problem,
                                                                permanent=True))
            except StaleTokenError:
                pass
        return kept

    def _pending(self) -> int:
        """Pending jobs (of our sweep), for --fuse auto's fair share; not needed otherwise."""
        return self.store.count_in(self.opts.sweep, JobStatus.PENDING) if self.opts.fuse == "auto" else 0

    def _others_running(self) -> bool:
        return self.store.count_in(self.opts.sweep, JobStatus.RUNNING) > 0

    def _heartbeat(self) -> None:
        """Renew the leases of the jobs in hand; notice a lost lease or a dead supervisor; once a
        second, let the watchdog enforce the jobs' time limits, cancels and stops."""
        interval = max(0.05, self.opts.lease_s / 4)
        renewed = time.monotonic()
        while True:
            if self.stop.wait(min(interval, WATCH_S)):
                if not self.watchdog.jobs:
                    return
                time.sleep(WATCH_S)  # stopping with jobs in hand: keep watching until they answer
            try:
                self.watchdog.check()
            except Exception as exc:  # a transient database error must not kill the heartbeat
                log.warning("watchdog check failed: %s", exc)
            if time.monotonic() - renewed < interval:
                continue
            renewed = time.monotonic()
            if os.getppid() != self.parent:  # the supervisor died: stop and hand the jobs back
                log.warning("supervisor is gone; stopping")
                self.stop.set()
                return
            held = self.current
            try:
                refused = self.store.heartbeat_many(held, lease_s=self.opts.lease_s)
                for job_id, token in held:
                    if job_id in refused and held is self.current:
                        log.warning("job %d: heartbeat refused, lease lost (token %d is stale)", job_id, token)
                        self.lost.add(job_id)
                self.store.worker_seen(self.opts.worker_id, job_id=held[0][0] if held else None)
            except Exception as exc:  # a transient database error must not kill the heartbeat
                log.warning("heartbeat failed: %s", exc)

    def _run_jobs(self, jobs: list[ClaimedJob]) -> bool:
        """Train the claimed jobs (one alone, several of one fusion key as one fused group) and write
        each one's outcome back under its own fencing token. True when they failed: the process may
        be left unfit for the next job (leaked memory, a poisoned CUDA context or module state)."""
        self.lost = set()
        self.current = [(job.id, job.token) for job in jobs]
        self.watchdog.hold(jobs)
        ckpts = [job_path(self.opts.checkpoint_dir, job.id, config_hash(job.config)) for job in jobs]
        failed = False
        try:
            for job, ckpt, outcome in zip(jobs, ckpts, self._train(jobs, ckpts, self._seal(jobs, ckpts))):
                if outcome is None:  # stopped (released) or taken over: nothing to write
                    continue
                failed = failed or outcome.status == JobStatus.FAILED
                try:
                    self.store.finish(job.id, job.token, outcome)
                except StaleTokenError as exc:
                    log.warning("job %d: write-back refused, another worker owns it now (%s)", job.id, exc)
                    continue
                if outcome.status != JobStatus.FAILED:  # a failed job keeps its checkpoint: its retry resumes there
                    checkpoints.remove(ckpt)
        finally:
            self.current = []
            self.watchdog.hold([])
        return failed

    def _seal(self, jobs: list[ClaimedJob], ckpts: list[Path]) -> checkpoints.Seal:
        """What binds the jobs' checkpoint files to the queue: a file is resumed only if its digest is
        the one recorded for its job, and each file written has its digest recorded under the job's token."""
        owners = {path: (job.id, job.token) for job, path in zip(jobs, ckpts)}

        def record(written: list[tuple[Path, str]]) -> None:
            lost = self.store.record_checkpoints([(*owners[path], digest) for path, digest in written])
            if lost:
                log.warning("jobs %s: checkpoint digests not recorded: another worker owns them now", sorted(lost))

        return checkpoints.Seal(owners, {path: job.checkpoint_digest for job, path in zip(jobs, ckpts)}, record, self.key)

    def _train(self, jobs: list[ClaimedJob], ckpts: list[Path], seal: checkpoints.Seal) -> list[JobOutcome | None]:
        """Train the claimed jobs; a JobOutcome per job, or None where there is nothing to write back.
        Every job, fused or alone, resumes from and saves its own checkpoint file."""
        t0 = time.perf_counter()
        if self.device != "cpu":
            torch.cuda.reset_peak_memory_stats()

        def should_stop() -> bool:
            if all(job.id in self.lost for job in jobs):  # nobody left to write for: stop now
                raise _LeaseLost
            return self.stop.is_set()

        error, results, permanent = None, None, False
        shared = f"# jobs {', '.join(str(job.id) for job in jobs)} trained as one fused group: this is their output\n"
        with job_output.captured(shared if len(jobs) > 1 else "") as output:
            self.watchdog.output = output
            try:
                weights = [self._initial_weights(job) for job in jobs]
                if len(jobs) == 1:
                    results = [train(jobs[0].config, device=self.device, should_stop=should_stop,
                                     checkpoint_path=ckpts[0], threads=None,  # the worker set its threads
                                     seal=seal, initial_weights=weights[0])]
                else:
                    results = train_group([job.config for job in jobs], device=self.device, should_stop=should_stop,
                                          checkpoint_paths=ckpts, threads=None, seal=seal, initial_weights=weights)
            except _LeaseLost:
                for job in jobs:
                    self._abandoned(job)
            except Exception as exc:
                error = traceback.format_exc()
                # A user's mistake in the job (a module that does not import, an unknown name, a config
                # its batch function or model refuses) fails the same way on every attempt: no retry.
                permanent = isinstance(exc, UserError)
                log.warning("jobs %s failed%s: %s", [job.id for job in jobs],
                            " (permanent: not retried)" if permanent else "", error.strip().splitlines()[-1])
            finally:
                self.watchdog.output = None
        printed = output.value()
        if results is None:
            # Outside the except block: the traceback no longer pins the jobs' tensors.
            _free_memory()
            summary = {**self.where, "wall_s": round(time.perf_counter() - t0, 4)}
            return [None if error is None or job.id in self.lost
                    else JobOutcome(JobStatus.FAILED, summary, error=error, permanent=permanent, log=printed.text,
                                    log_dropped=printed.dropped) for job in jobs]
        return [self._outcome(job, result, printed) for job, result in zip(jobs, results)]

    def _initial_weights(self, job: ClaimedJob) -> dict[str, Any] | None:
        """The stored weights a job with `init_from` starts from (None without it); UserError when the
        named job kept none at that step (submit checked they were there)."""
        source = job.config.get("init_from")
        if not source:
            return None
        found = self.store.stored_weights(int(source["job"]), source.get("step", "end"), source.get("member"))
        if found is None:
            raise UserError(f"init_from: job {source['job']} has no weights stored at step {source.get('step', 'end')}")
        return {name: from_npy(data) for name, data in found[1].items()}

    def _outcome(self, job: ClaimedJob, result: TrainResult, printed: JobLog) -> JobOutcome | None:
        """What to write back for one trained job, with what its attempt printed: its outcome, or None
        (released after a stop, or its lease was lost and another worker owns it)."""
        if job.id in self.lost:
            self._abandoned(job)
            return None
        if result.status == RunStatus.STOPPED:
            try:
                self.store.release(job.id, job.token, reason="worker stopped", count_attempt=False, log=printed.text,
                                   log_dropped=printed.dropped)
                log.info("job %d: stopped at step %d, back in the queue", job.id, result.summary["steps_run"])
            except StaleTokenError as exc:
                log.warning("job %d: release refused, another worker owns it now (%s)", job.id, exc)
            return None
        summary = {**result.summary, **self.where}
        if self.device != "cpu":  # what --per-device packing has to fit
            summary["max_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        status = JobStatus.DIVERGED if result.status == RunStatus.DIVERGED else JobStatus.DONE
        arrays = [(name, step, to_npy(a)) for name, step, a in result.arrays]
        too_big = oversized(arrays)
        if too_big is not None:  # the same on every attempt: fail now, with the cause
            log.warning("job %d failed (permanent: not retried): %s", job.id, too_big)
            return JobOutcome(JobStatus.FAILED, summary, error=too_big, permanent=True, log=printed.text,
                              log_dropped=printed.dropped)
        return JobOutcome(status, summary, result.metrics, arrays, error=result.reason, log=printed.text,
                          log_dropped=printed.dropped)


    @staticmethod
    def _abandoned(job: ClaimedJob) -> None:
        log.warning("job %d: write-back refused: token %d is stale (the lease expired and another worker "
                    "took the job, or it was cancelled); abandoned without writing", job.id, job.token)


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
