"""Limits on what one job writes back, checked before the write: a grab that returns a huge array
fails its job with the cause instead of failing the database write (SQLite refuses a value over
1 GB with "string or blob too big", PostgreSQL a bytea over 1 GB) on every attempt.

Defaults: 256 MiB per array, 1 GiB for all of a job's arrays; RUNNER_MAX_ARRAY_MB and
RUNNER_MAX_JOB_MB change them (both in MiB). Torch-free.
"""
from __future__ import annotations

import os
from typing import Sequence

MIB = 2**20


def _limit(name: str, default_mib: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(float(value) * MIB) if value else default_mib * MIB


def oversized(arrays: Sequence[tuple[str, int, bytes]]) -> str | None:
    """Why these (name, step, npy bytes) arrays cannot be written back, or None when they can."""
    per_array, per_job = _limit("RUNNER_MAX_ARRAY_MB", 256), _limit("RUNNER_MAX_JOB_MB", 1024)
    for name, step, data in arrays:
        if len(data) > per_array:
            return (f"array {name!r} at step {step} is {len(data) / MIB:.1f} MiB, over the limit of "
                    f"{per_array / MIB:g} MiB per array: record it less often or smaller (or raise RUNNER_MAX_ARRAY_MB)")
    total = sum(len(data) for _, _, data in arrays)
    if total > per_job:
        return (f"the job's arrays take {total / MIB:.1f} MiB, over the limit of {per_job / MIB:g} MiB per job: "
                "record them less often or smaller (or raise RUNNER_MAX_JOB_MB)")
    return None
