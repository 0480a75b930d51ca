"""The spawn target of every worker process, and the plain values it is started with.

`worker_main` takes plain values only and sets CUDA_VISIBLE_DEVICES before torch is imported, so
this module never imports torch or anything that does (the supervisor imports it too). The
claim-train-write loop is in runner.pool.worker, imported once the device is pinned.

A worker is started before the supervisor has finished its checks: it imports torch and the loop
(the better part of its start) while the supervisor checks the database and the devices, then
reads its settings from a pipe; None there means the pool was called off.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .last_words import Tee

RECYCLE_EXIT = 75  # a worker leaving after a failed job, to be replaced by a fresh process (EX_TEMPFAIL)


@dataclass(frozen=True)
class WorkerOptions:
    """Everything a worker needs, as plain picklable values."""

    db: str
    checkpoint_dir: str
    worker_id: str
    host: str           # the supervisor's host id (--host-id; default this machine's name)
    device_label: str   # 'cuda:1' or 'cpu', as shown to users and stored with results
    visible: str        # CUDA_VISIBLE_DEVICES for this process ('' for CPU workers)
    threads: int        # torch intra-op threads
    sweep: str | None = None
    max_jobs: int | None = None
    fuse: int | str = "auto"  # jobs of one fusion key trained as one batched model: a number (1: none fused) or auto
    memory_share: float = 1.0  # the fraction of its GPU's memory this worker may use (1 / workers per GPU)
    pool_size: int = 1         # workers in this worker's pool (--fuse auto shares the pending jobs among them)
    wait: bool = False
    poll_s: float = 0.4  # --wait: the longest an idle worker goes without looking for new jobs
    lease_s: float = 60.0
    log_level: str = "INFO"
    env: tuple[tuple[str, str], ...] = ()  # set before CUDA starts: the MPS daemon's pipe and log folders


def worker_main(visible: str, worker_id: str, log_level: str, settings: Connection) -> None:
    """Spawn target: pin the device, import torch and the loop, take the settings from the pipe (None:
    the pool was called off), then run jobs until the queue is empty or we are told to stop."""
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    if "torch" in sys.modules:  # pragma: no cover - a bug in how we were started
        raise RuntimeError("torch was imported before CUDA_VISIBLE_DEVICES was set")
    sys.stderr = Tee(sys.stderr, worker_id)  # type: ignore[assignment]  # its last words, should it die
    logging.basicConfig(level=log_level, format=f"%(asctime)s [{worker_id}] %(message)s", stream=sys.stderr)
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        if stop.is_set():  # second request: give up now; the supervisor returns the job to the queue
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    from .worker import Worker  # imports torch: only now that the device is pinned

    try:
        opts: WorkerOptions | None = settings.recv()  # the supervisor's checks are done
    except EOFError:  # the supervisor is gone
        opts = None
    settings.close()
    if opts is None:
        os._exit(0)
    os.environ.update(dict(opts.env))
    worker = Worker(opts, stop)
    worker.run()
    # Everything is written and the store is closed: leave without tearing down torch's modules,
    # which takes the better part of a second per worker and delays the end of every pool.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if worker.recycle:  # a failed job may have left this process unfit (leaked memory, poisoned state)
        os._exit(RECYCLE_EXIT)
    os._exit(0)
