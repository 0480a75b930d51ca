"""`runner.load_model(db, job_id, step="end")`: a finished job's model with the weights it stored.

The weights are the job's snapshots (`snapshots: [end]` or a list of steps in its grid): the
architecture comes from its config, built as its worker built it, so the model computes what the job's
model computed at that step.
"""
from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..npy import from_npy


def load_model(db: str, job_id: int, step: int | str = "end", *, device: str = "cpu") -> Any:
    """The model of job `job_id` with its weights at `step` ("end": the last step it stored weights at),
    in eval mode on `device`. UserError when the job stored no weights (add `snapshots: [end]`)."""
    import json

    from ..queue.store import Store
    from ..train.loading import model_with_weights

    with Store(db) as store:
        table = store.job_table(job_ids=[int(job_id)])
        if not table["job_id"]:
            raise UserError(f"no job {job_id} in {store.shown}: list the jobs with `runner jobs`")
        config = json.loads(table["config"][0])
        found = store.stored_weights(int(job_id), step)
        steps = store.weight_steps(int(job_id)) if found is None else []  # only to say what there is
    if found is None and not steps:
        raise UserError(f"job {job_id} stored no weights: give its grid `snapshots: [end]` (or the steps to keep)")
    if found is None:
        raise UserError(f"job {job_id} stored weights at steps {steps}, not at {step}")
    return model_with_weights(config, {name: from_npy(data) for name, data in found[1].items()}, device)
