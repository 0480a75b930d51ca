"""Whether torch's compiled bytecode is on disk for the workers to load.

Without it every worker compiles torch (and torch._dynamo, which torch.optim imports) from source
when it starts: measured on an H200 host whose image set PYTHONDONTWRITEBYTECODE, importing the
two took about 7 s per worker instead of about 4.5 s (benchmarks/startup.py). The supervisor checks once, without importing torch, and says how
to fix it; it never compiles anything itself.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def _writable(path: Path) -> bool:
    """Whether a file could be created at `path`: its nearest existing folder is writable."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def missing_bytecode_hint(package: str = "torch") -> str | None:
    """One line saying that `package` has no bytecode cache and Python cannot write one, with the
    fix; None when the cache is there or the first process to import the package will write it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    cached = Path(importlib.util.cache_from_source(spec.origin))  # follows PYTHONPYCACHEPREFIX
    writable = _writable(cached)
    if cached.exists() or (writable and not sys.dont_write_bytecode):
        return None
    folder = Path(spec.origin).parent
    if writable:  # so PYTHONDONTWRITEBYTECODE is what stops it
        why, fix = "PYTHONDONTWRITEBYTECODE is set", f"compile it once with: python -m compileall -q -j 0 {folder}"
    else:
        why = f"{cached.parent} is read-only" + (" and PYTHONDONTWRITEBYTECODE is set" if sys.dont_write_bytecode else "")
        fix = ("point Python at a writable cache: export PYTHONPYCACHEPREFIX=$HOME/.cache/pycache"
               + (" and unset PYTHONDONTWRITEBYTECODE" if sys.dont_write_bytecode else ""))
    return (f"{package} has no compiled bytecode here and Python cannot save it ({why}), so every worker "
            f"compiles {package} again when it starts (seconds each); {fix}")


def torch_bytecode() -> str:
    """A benchmark header's account of torch's bytecode: cached, or the hint."""
    return missing_bytecode_hint("torch") or "cached (or written by the first import)"
