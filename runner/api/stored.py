"""A finished job's config and the weights it stored, named by reference: a job id (7), or a member
of a paired job ("7.a", or job 7 with member="a"), whose config is the member's own (the job's keys
with the member's on top) and whose weights are its `a.weights.<param>` snapshots. What
runner.load_model, runner.connectivity, runner.trajectory and runner.loss_slice read.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from ..errors import UserError
from ..npy import from_npy

_REF = re.compile(r"^\s*(\d+)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*$")


def parse_ref(ref: int | str, member: str | None = None) -> tuple[int, str | None]:
    """(job id, member or None) of 7, "7", "7.a", or 7 with member "a"; UserError for anything else."""
    if isinstance(ref, bool):
        raise UserError(f"a job is named by its id (7) or a member of a paired job (7.a), got {ref!r}")
    if isinstance(ref, (int, np.integer)):
        job, named = int(ref), None
    else:
        found = _REF.match(str(ref))
        if not found:
            raise UserError(f"a job is named by its id (7) or a member of a paired job (7.a), got {ref!r}")
        job, named = int(found.group(1)), found.group(2)
    if named is not None and member is not None and named != member:
        raise UserError(f"{ref!r} names member {named!r}, and member={member!r} another: give one")
    if job < 1:
        raise UserError(f"job ids start at 1, got {job}")
    return job, named if named is not None else member


def label(job: int, member: str | None) -> str:
    """How a reference is shown: 7 or 7.a."""
    return f"{job}" if member is None else f"{job}.{member}"


def config_of(store: Any, job: int, member: str | None) -> dict[str, Any]:
    """The config the job (or its member) trained with; UserError for a missing job or member, and for a
    paired job named without a member."""
    from ..train.options import trained_config

    table = store.job_table(job_ids=[job])
    if not table["job_id"]:
        raise UserError(f"no job {job} in {store.shown}: list the jobs with `runner jobs`")
    return trained_config(json.loads(table["config"][0]), job, member)


def weights_at(db: str, ref: int | str, step: int | str = "end",
               member: str | None = None) -> tuple[dict[str, Any], int, dict[str, np.ndarray]]:
    """(config, the step found, parameter name -> array) of a job's (or member's) weights at `step`
    ("end": the last it stored); UserError when it stored none there, naming the steps it did."""
    from ..queue.store import Store

    if step != "end" and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise UserError(f"step must be a step number >= 0 or end, got {step!r}")
    job, member = parse_ref(ref, member)
    with Store(db) as store:
        config = config_of(store, job, member)
        found = store.stored_weights(job, step, member)
        steps = store.weight_steps(job, member) if found is None else []
    shown = label(job, member)
    if found is None:
        raise UserError(f"job {shown} stored weights at steps {steps}, not at {step}" if steps else
                        f"job {shown} stored no weights: give its grid `snapshots: [end]` (or keep_final: true, "
                        "trajectory_every)")
    return config, found[0], {name: from_npy(data) for name, data in found[1].items()}


def weight_history(db: str, ref: int | str,
                   member: str | None = None) -> tuple[dict[str, Any], list[tuple[int, dict[str, np.ndarray]]]]:
    """(config, [(step, parameter name -> array)] oldest first) of every snapshot a job (or member) stored."""
    from ..queue.store import Store

    job, member = parse_ref(ref, member)
    with Store(db) as store:
        config = config_of(store, job, member)
        history = store.weight_history(job, member)
    return config, [(step, {name: from_npy(data) for name, data in arrays.items()}) for step, arrays in history]
