"""The training side: one generic loop every job runs, and what it is built from.

    runner.train(config)   # one job inline, no queue: calls runner.train.loop.train

Lives here: the loop (loop), its data pipeline (data), learning-rate schedule (schedule), losses and
optimizers (optim), step capture as CUDA graphs (capture), loss thresholds (thresholds), recorded
series (records), grab calls (grabbing), checkpoint files (checkpoints), built-in models (models),
the trainloop's option table (options), the validation of a job config into a plan (plan), and
fused trials: which jobs may train together (fusion), K models stacked into one (stacked) and a
group of jobs trained as one batched model (fused).

May import: the base modules (runner.errors, runner.registry, runner.hashing, runner.npy, runner.text)
and nothing from queue, pool, results or cli, so it runs alone and in tests. Importing this package
does not import torch; its modules that train do.
"""
from __future__ import annotations

from .._callable import make_callable

make_callable(__name__, "runner.train.loop:train", "Run one job inline and return its TrainResult (runner.train.loop.train).")
