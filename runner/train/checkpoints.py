"""Checkpoint files: one per job, written atomically, read back without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model and optimizer state,
generator states, the metrics so far), so `torch.load(weights_only=True)` reads it and a
planted pickle cannot run code. Files are written to a temporary name, synced and renamed, so a
reader sees the previous checkpoint or the new one, never half of one. The temporary file is created
exclusively under a random name (a symlink planted at a name it could take redirects nothing), and a
folder runner creates for checkpoints is private to its user (mode 0700).

A worker binds each file to its job with a `Seal`: the file names the job and attempt that wrote it,
and the digest of its bytes (an HMAC under the signing key, when there is one) is recorded in the
database as it is written. A later attempt resumes a file only if its digest is the recorded one, so
a planted or forged file is ignored with a warning and the job starts from step 0.
"""
from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..signing import file_digest, same_digest

log = logging.getLogger("runner.checkpoint")

FORMAT = 2  # bumped when the layout of the state dict changes; other formats are ignored
# 2: one entry per part of the loop (data, records, rng...) instead of one flat dict


@dataclass
class Seal:
    """What binds a run's checkpoint files to the queue: per file, the job and attempt it belongs to
    and the digest the database recorded for it; `record` stores the digests of files just written."""

    owners: dict[Path, tuple[int, int]]            # file -> (job id, attempt token)
    recorded: dict[Path, str | None]               # file -> digest in the database (None: none recorded)
    record: Callable[[list[tuple[Path, str]]], None]
    key: bytes | None = None                       # the signing key: digests are HMACs under it
    written: list[tuple[Path, str]] = field(default_factory=list)  # saved since the last flush

    def why_not(self, path: Path, data: bytes) -> str | None:
        """Why the file's bytes are not the checkpoint recorded for its job (None: they are)."""
        recorded = self.recorded.get(path)
        if recorded is None:
            return "the database records no checkpoint for this job (a file planted there, or one from before)"
        if not same_digest(file_digest(data, self.key), recorded):
            return "its digest is not the one the database recorded when the job's worker wrote it (replaced or forged)"
        return None

    def flush(self) -> None:
        """Record the files saved since the last flush, in one write; a failure leaves them unresumable."""
        written, self.written = self.written, []
        if not written:
            return
        try:
            self.record(written)
            self.recorded.update(written)
        except Exception as exc:  # noqa: BLE001 - the queue unreachable: training goes on, the files will not resume
            log.warning("checkpoint digests not recorded (%s): a retry will start these jobs from step 0", exc)


def save(path: Path, state: dict[str, Any], key: bytes | None = None) -> str:
    """Write `state` to `path` atomically (temp file in the same folder, fsync, rename); returns the
    digest of the bytes written (an HMAC under `key` when given)."""
    import torch  # here, not at the top: the supervisor uses this module and never imports torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_CREAT | O_EXCL under a random name: never an existing file, never through a symlink (the rename
    # then replaces whatever is at `path`, a symlink included, without following it)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return file_digest(data, key)


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


def try_save(path: Path, state: dict[str, Any], seal: Seal | None = None) -> str | None:
    """`save`, where a failure (the folder deleted, the disk full, no permission) is a warning, not
    the job's end: training goes on without this checkpoint. The reason in one line, or None. With a
    seal the file names its job and attempt, and its digest waits in the seal for `Seal.flush`."""
    try:
        if seal is None:
            save(path, state)
        else:
            job_id, attempt = seal.owners[path]
            seal.written.append((path, save(path, {**state, "job": {"id": job_id, "attempt": attempt}}, seal.key)))
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        reason = f"checkpoint at step {state.get('step')} not written to {path}: {type(exc).__name__}: " \
                 f"{(str(exc).splitlines() or [''])[0]}"
        log.warning("%s; training goes on", reason)
        return reason
    return None


def load(path: Path, config_hash: str, seal: Seal | None = None) -> dict[str, Any] | None:
    """The checkpoint at `path` if it exists and belongs to this job's config (and, with a seal, is
    the file the database recorded for this job), else None.

    An unreadable, foreign or unrecorded file is logged and ignored: the job then starts from step 0.
    The bytes are checked before they are parsed, and parsed as read: nothing can swap the file between."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring checkpoint %s: cannot be read (%s)", path, exc.strerror)
        return None
    problem = seal.why_not(path, data) if seal is not None else None
    if problem is not None:
        log.warning("ignoring checkpoint %s: %s; the job starts from step 0", path, problem)
        return None
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated by a full disk, or a pickle with code in it
        log.warning("ignoring checkpoint %s: cannot be read safely (%s)", path, str(exc).splitlines()[0])
        return None
    owner = seal.owners[path][0] if seal is not None else None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("config_hash") != config_hash \
            or (owner is not None and (state.get("job") or {}).get("id") != owner):
        log.warning("ignoring checkpoint %s: written for another job or by another version", path)
        return None
    return state


def remove(path: Path | None) -> None:
    """Delete a finished job's checkpoint (missing is fine)."""
    if path is not None:
        path.unlink(missing_ok=True)
