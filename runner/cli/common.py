"""What every `runner` command shares: the main group, the --db and --sweep options, and the
one-line handling of user errors (`error: <cause and fix>`, exit code 2, never a traceback).

The command modules (queue, reading, plots) register their commands on `main`; runner.cli imports
them. Nothing heavy is imported here: `runner --help` loads click and runner's base modules only.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any, Callable

import click

from ..errors import UserError
from ..text import printable

DB_HELP = "database: a file path or a SQLAlchemy URL (env RUNNER_DB)"
ONLY_THIS_SWEEP = "only this sweep"
DRAWN_SWEEP = "the sweep to draw [default: the database's only sweep]"
JOB_ID = click.IntRange(1, (1 << 63) - 1)  # a job id is a database integer: larger ones are refused as usage errors


class _JobRef(click.ParamType):
    """A job id (7), or a member of a paired job (7.a): the int, or the "7.a" text."""

    name = "JOB"
    _form = re.compile(r"^(\d+)(\.[A-Za-z_][A-Za-z0-9_]*)?$")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        found = self._form.match(str(value).strip())
        if not found or not 1 <= int(found.group(1)) < 1 << 63:
            self.fail(f"{value!r} is not a job id (7) or a member of a paired job (7.a)", param, ctx)
        return int(found.group(1)) if found.group(2) is None else str(value).strip()


JOB_REF = _JobRef()


class _OneLineGroup(click.Group):
    """click's own usage errors (a bad option value, an unknown command) end in one line and exit 2 too."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            say(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runner")
def main() -> None:
    """Hyperparameter sweeps of small networks: grid file -> job queue -> GPU workers -> results."""


def say(text: str, err: bool = False) -> None:
    """Print a line (or lines) of output with control characters escaped (runner.text.printable):
    what a command prints holds sweep names, keys and errors from files and rows others wrote."""
    click.echo(printable(text), err=err)


_PASSWORD_IN_URL = re.compile(r"^[^:/]*://[^/@]*:[^/@]*@")  # scheme://user:password@host


def _warn_of_a_password(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A password typed into --db is in this process's arguments, which every user of the machine can
    read (`ps`): say so, and name the ways that keep it out of sight. (Child processes never get it in
    their arguments: spawned workers receive their settings through a pipe.)"""
    typed = value != os.environ.get("RUNNER_DB")  # (click sets the parameter's source only after callbacks)
    if value and typed and _PASSWORD_IN_URL.match(value):
        say("warning: the password in --db is visible to every user of this machine (ps): pass the URL in "
            "RUNNER_DB, or the password in ~/.pgpass or PGPASSWORD", err=True)
    return value


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--db, default jobs.db, env RUNNER_DB: the same option on every command."""
    return click.option("--db", envvar="RUNNER_DB", default="jobs.db", show_default=True, help=DB_HELP,
                        callback=_warn_of_a_password)(fn)


def sweep_option(help: str = ONLY_THIS_SWEEP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--sweep NAME, optional; `help` says what it narrows (only this sweep, the sweep to draw...)."""
    return click.option("--sweep", default=None, help=help)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into `error: <message>` and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            say("error: " + re.sub(r"\s*\n\s*", " ", str(exc).strip()), err=True)  # always one line
            sys.exit(exc.exit_code)

    return wrapper
