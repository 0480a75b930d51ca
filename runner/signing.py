"""Signed jobs for shared queues, and the digests that bind checkpoint files to their jobs.

With a signing key (RUNNER_SIGNING_KEY, or a file named by RUNNER_SIGNING_KEY_FILE), submit stores an
HMAC-SHA256 of each job's canonical config with the job, and workers holding the key refuse a job
whose signature is missing or wrong before importing anything it names: whoever can write the jobs
table but lacks the key cannot make a worker run code (Celery's message signing, for a queue table).
The key is read from the environment or its file only: never stored in the database, never printed.

Checkpoint digests use the same key when there is one (an HMAC of the file's bytes, which nobody
without the key can forge for a planted file), else a plain SHA-256. A base module: no torch.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .hashing import canonical_json

KEY_ENV = "RUNNER_SIGNING_KEY"            # the key itself
KEY_FILE_ENV = "RUNNER_SIGNING_KEY_FILE"  # or a file holding it (private to its owner, like an ssh key)
MIN_KEY_BYTES = 16                        # shorter keys can be guessed
_JOB_DOMAIN = b"runner job v1\n"          # what a signature is of: a job config, nothing else runner signs
_CHECKPOINT_DOMAIN = b"runner checkpoint v1\n"


def signing_key() -> bytes | None:
    """The configured key, or None when neither variable is set; UserError (one line, with the fix)
    for a key too short, a key file that cannot be read or that others can read, or both variables set."""
    value, file = os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV)
    if value and file:
        raise UserError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set: unset one of them")
    if file:
        key = _read_key_file(Path(file).expanduser())
        where = f"the key file {file}"
    elif value:
        key, where = value.encode(), KEY_ENV
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise UserError(f"{where} holds a signing key of {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
                        f"(for example: python -c 'import secrets; print(secrets.token_hex(32))')")
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{KEY_FILE_ENV}={path} is not a regular file: name the file that holds the key")
        if info.st_mode & 0o077:
            raise UserError(f"the key file {path} can be read or written by other users: chmod 600 {path}")
        return path.read_bytes().strip()
    except OSError as exc:
        raise UserError(f"cannot read the key file {path} ({exc.strerror}): fix {KEY_FILE_ENV}") from None


def key_source() -> str:
    """Where the key comes from, for messages (the variable's name, never the key)."""
    return KEY_FILE_ENV if os.environ.get(KEY_FILE_ENV) else KEY_ENV


def sign_config(key: bytes, config: Mapping[str, Any]) -> str:
    """The signature stored with a job: HMAC-SHA256 of its canonical config."""
    mac = hmac.new(key, _JOB_DOMAIN + canonical_json(config).encode(), hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


def signature_problem(key: bytes, config: Mapping[str, Any], signature: str | None) -> str | None:
    """Why a job may not run under this key (one line), or None when its signature is genuine."""
    if not signature:
        return (f"refused: the job is not signed, and this worker holds a signing key ({key_source()}): "
                "a row written without the key is not run; submit it with the key")
    try:
        expected = sign_config(key, config)
    except (TypeError, ValueError):  # a config that is not JSON cannot have been signed by submit
        expected = ""
    if not hmac.compare_digest(expected, signature):
        return (f"refused: the job's signature does not match its config under this worker's key ({key_source()}): "
                "the row was changed or signed with another key; submit it again with the key")
    return None


def file_digest(data: bytes, key: bytes | None) -> str:
    """The digest recorded for a checkpoint file's bytes: an HMAC under the key, else SHA-256."""
    if key is None:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    return "hmac-sha256:" + hmac.new(key, _CHECKPOINT_DOMAIN + data, hashlib.sha256).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
