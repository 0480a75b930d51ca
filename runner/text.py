"""Words shared by every layer's messages and displays: the one "did you mean" and durations.

A base module: it imports nothing from runner, and every layer may import it.
"""
from __future__ import annotations

import difflib
import re
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


def printable(text: str) -> str:
    """Text safe to print on a terminal: control characters (escape sequences that clear the screen or
    move the cursor, carriage returns that overwrite a line) and Unicode format characters (bidi
    overrides that reorder what is shown) appear escaped, as \\x1b or \\u202e; newlines and tabs stay.
    Sweep names, keys and errors come from grid files and database rows anyone may have written."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_file_name(text: str) -> str:
    """A name from user data made safe as one file name in the working folder: no folders (/ or \\),
    no leading dot (not hidden, not '..'), nothing but letters, digits, '.', '_', '-' and '='."""
    name = re.sub(r"[^A-Za-z0-9._=-]", "_", text).lstrip(".")
    return name[:200] or "_"
