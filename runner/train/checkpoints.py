"""Checkpoint files: one per job, written atomically, read back without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model and optimizer state,
generator states, the metrics so far), so `torch.load(weights_only=True)` reads it and a
planted pickle cannot run code. Files are written to a temporary name, synced and renamed, so a
reader sees the previous checkpoint or the new one, never half of one. The temporary file is created
exclusively under a random name (a symlink planted at a name it could take redirects nothing), and a
folder runner creates for checkpoints is private to its user (mode 0700).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("runner.checkpoint")

FORMAT = 2  # bumped when the layout of the state dict changes; other formats are ignored
# 2: one entry per part of the loop (data, records, rng...) instead of one flat dict


def save(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: temp file in the same folder, fsync, rename."""
    import torch  # here, not at the top: the supervisor uses this module and never imports torch

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_CREAT | O_EXCL under a random name: never an existing file, never through a symlink (the rename
    # then replaces whatever is at `path`, a symlink included, without following it)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def job_state(*, config_hash: str, step: int, wall_s: float, model: Any, optimizer: Any, device: Any, data: Any,
              batch: Any, tracker: Any, records: Any) -> dict[str, Any]:
    """The one layout of a job's checkpoint (FORMAT): everything needed to continue at `step` exactly
    as if never interrupted, each part's own state. A job alone and a fused member both write it, so
    either resumes from the other's file."""
    import torch

    cuda = device.type == "cuda"
    return {
        "format": FORMAT, "config_hash": config_hash, "step": step, "wall_s": wall_s,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        # the last step's gradients: a grab at the resume step (grad_norm) reads them
        "grads": [None if p.grad is None else p.grad.detach().cpu() for p in model.parameters()],
        "rng": {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if cuda else None},
        "data": data.state(),
        "batch": None if batch is None else [t.cpu() for t in batch],
        "tracker": tracker.state(),
        "records": records.state(),
    }


def try_save(path: Path, state: dict[str, Any]) -> str | None:
    """`save`, where a failure (the folder deleted, the disk full, no permission) is a warning, not
    the job's end: training goes on without this checkpoint. The reason in one line, or None."""
    try:
        save(path, state)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        reason = f"checkpoint at step {state.get('step')} not written to {path}: {type(exc).__name__}: " \
                 f"{(str(exc).splitlines() or [''])[0]}"
        log.warning("%s; training goes on", reason)
        return reason
    return None


def load(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it exists and belongs to this job's config, else None.

    An unreadable or foreign file is logged and ignored: the job then starts from step 0."""
    if not path.exists():
        return None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated by a full disk, or a pickle with code in it
        log.warning("ignoring checkpoint %s: cannot be read safely (%s)", path, str(exc).splitlines()[0])
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("config_hash") != config_hash:
        log.warning("ignoring checkpoint %s: written for another job or by another version", path)
        return None
    return state


def remove(path: Path | None) -> None:
    """Delete a finished job's checkpoint (missing is fine)."""
    if path is not None:
        path.unlink(missing_ok=True)
