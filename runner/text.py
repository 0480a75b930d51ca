"""Words shared by every layer's messages and displays: the one "did you mean" and durations.

A base module: it imports nothing from runner, and every layer may import it.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name nearest to a misspelt one (difflib's ratio >= 0.6), or None."""
    found = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """"did you mean 'lr'?" for the nearest known name, or "" when none is near: the one wording
    every "unknown X" error uses."""
    near = closest(name, candidates)
    return f"did you mean {near!r}?" if near is not None else ""


def format_duration(seconds: float | None) -> str:
    """A duration for tables: 45s, 3m05s, 2h07m; '-' when unknown or infinite."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
