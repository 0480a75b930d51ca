"""A SQLite queue belongs to one machine: its file must be on a local disk, and its workers must all
run on the machine that holds it. SQLite's write-ahead log needs shared memory and its locks need a
filesystem that honours them; on NFS, Lustre, GPFS or CIFS, or opened from two machines, two
workers can claim one job and a write can be lost. PostgreSQL is the queue for several machines.

Torch-free and SQL-free: the store asks `network_filesystem` when it opens a file and compares
`machine_id`s of live workers (Reads.workers_elsewhere) before a pool starts.
"""
from __future__ import annotations

import os
import socket

MOUNTS = "/proc/self/mounts"  # where Linux lists this process's mounts: device, mount point, type, ...
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p"})
BOOT_ID = "/proc/sys/kernel/random/boot_id"  # one value per running kernel: containers on one host share it
LIVE_S = 180.0  # a worker seen within this many seconds (and not marked exited) counts as live


def _unescape(field: str) -> str:
    """A mount point as /proc/self/mounts writes it: space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_of(path: str, mounts: str) -> str | None:
    """The type of the filesystem holding `path` (absolute, symlinks resolved), by the longest mount
    point in `mounts` (text in /proc/self/mounts form) that contains it; None when none does."""
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1]).rstrip("/") or "/"
        inside = path == point or path.startswith(point if point == "/" else point + "/")
        if inside and len(point) >= best:  # a later mount over the same point hides the earlier one
            best, kind = len(point), fields[2]
    return kind


def network_filesystem(path: str) -> str | None:
    """The network filesystem type (nfs4, lustre, ...) the database file at `path` would live on, or
    None when it is local or this system does not say (no /proc: macOS, Windows)."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        with open(MOUNTS, encoding="utf-8", errors="replace") as f:
            mounts = f.read()
    except OSError:
        return None
    kind = filesystem_of(folder, mounts)
    return kind if kind in NETWORK_FILESYSTEMS else None


def machine_id() -> str:
    """What tells machines apart for SQLite: the running kernel's boot id (processes in containers of
    one host share its locks and shared memory, so they count as one machine), else the host name."""
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"boot:{boot}" if boot else f"host:{socket.gethostname()}"
