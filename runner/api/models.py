"""`runner.load_model(db, job_id, step="end", member=None)`: a finished job's model with the weights it stored.

The weights are the job's snapshots (`snapshots: [end]` or a list of steps in its grid): the
architecture comes from its config, built as its worker built it, so the model computes what the job's
model computed at that step.
"""
from __future__ import annotations

from typing import Any


def load_model(db: str, job_id: int | str, step: int | str = "end", *, member: str | None = None,
               device: str = "cpu") -> Any:
    """The model of job `job_id` with its weights at `step` ("end": the last step it stored weights at),
    in eval mode on `device`. A paired job's member: `member="a"` (or job_id "7.a"). UserError when
    the job stored no weights (add `snapshots: [end]`)."""
    from ..train.loading import model_with_weights
    from .stored import weights_at

    config, _, weights = weights_at(db, job_id, step, member)
    return model_with_weights(config, weights, device)
