"""Pieces every `runner` command shares: the --db option and the one-line handling of user errors.

A module of its own so that runner.cli and runner.cli_plots (which runner.cli imports) both use it.
"""
from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable

import click

from ..errors import UserError

DB_HELP = "database: a file path or a SQLAlchemy URL (env RUNNER_DB)"


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--db, default jobs.db, env RUNNER_DB: the same option on every command."""
    return click.option("--db", envvar="RUNNER_DB", default="jobs.db", show_default=True, help=DB_HELP)(fn)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into `error: <message>` and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo("error: " + re.sub(r"\s*\n\s*", " ", str(exc).strip()), err=True)  # always one line
            sys.exit(exc.exit_code)

    return wrapper
