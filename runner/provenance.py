"""Where a submit came from, recorded with it: the git commit of the folder the grid came from,
whether the work tree was dirty (and a hash of its diff, so two dirty submits can be told apart),
the versions of runner, torch and Python, the host and the command line.

Torch-free and quick (submit imports it): versions are read from package metadata, git runs as a
subprocess with a short timeout, and a folder outside git (or no git at all) gives nulls, never an error.
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 5.0
_PASSWORD_IN_URL = re.compile(r"(://[^/@:\s'\"]*:)[^/@\s'\"]*@")  # scheme://user:password@host


def collect(folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The provenance of a submit from `folder` (the grid file's; default the working folder)."""
    from . import __version__

    where = Path(folder) if folder is not None else Path.cwd()
    return {**git_state(where), "runner_version": __version__, "torch_version": _version("torch"),
            "python_version": platform.python_version(), "host": socket.gethostname(),
            "command": command_line(sys.argv), "cwd": str(Path.cwd())}


def command_line(argv: list[str]) -> str | None:
    """The command as typed (the program by its name), stored and shown: the --db value is left out
    (it is the database the line is stored in; a database never keeps its own URL, which may hold a
    password), and a password in any other URL is masked."""
    if not argv:
        return None
    program = Path(argv[0])
    # `python -m runner.cli` runs runner/cli/__main__.py: the same command as the console script
    args = ["runner" if program.name == "__main__.py" and program.parent.name == "cli" else program.name]
    for previous, arg in zip(argv, argv[1:]):
        args.append("<db>" if previous == "--db" else "--db=<db>" if arg.startswith("--db=") else arg)
    return _PASSWORD_IN_URL.sub(r"\1***@", " ".join(shlex.quote(arg) for arg in args))


def git_state(folder: Path) -> dict[str, Any]:
    """git_commit, git_dirty and git_diff_sha256 (of `git diff HEAD`, untracked files listed by name)
    of the repository holding `folder`; nulls outside one."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None, "git_diff_sha256": None}
    status = _git(folder, "status", "--porcelain", "--untracked-files=normal") or ""
    dirty = bool(status.strip())
    digest = None
    if dirty:
        diff = _git(folder, "diff", "HEAD", "--no-color", "--no-ext-diff") or ""
        untracked = "\n".join(line for line in status.splitlines() if line.startswith("??"))
        digest = hashlib.sha256(f"{diff}\n{untracked}".encode()).hexdigest()
    return {"git_commit": commit.strip(), "git_dirty": dirty, "git_diff_sha256": digest}


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
