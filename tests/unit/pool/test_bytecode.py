"""The start-up hint for a torch without compiled bytecode (every worker would compile it again).

Each case runs a fresh interpreter: whether Python may write bytecode is fixed at its start."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import cli_env

PROBE = "from runner.pool.bytecode import missing_bytecode_hint as h; print(h('fakepkg'))"


def _env(**env: str) -> dict[str, str]:
    """cli_env with Python's bytecode settings exactly as given (the caller's shell may set them)."""
    full = cli_env()
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        full.pop(name, None)
    return {**full, **env}


def _hint(packages: Path, **env: str) -> str:
    full = _env(**env)
    full["PYTHONPATH"] = f"{packages}{os.pathsep}{full['PYTHONPATH']}"
    done = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _package(tmp_path: Path) -> Path:
    (tmp_path / "fakepkg").mkdir(parents=True)
    (tmp_path / "fakepkg" / "__init__.py").write_text("VALUE = 1\n")
    return tmp_path


def test_no_hint_when_python_will_write_the_cache_itself(tmp_path):
    assert _hint(_package(tmp_path)) == "None"


def test_hint_names_the_cause_and_a_fix_that_works(tmp_path):
    packages = _package(tmp_path)
    hint = _hint(packages, PYTHONDONTWRITEBYTECODE="1")
    assert hint.startswith("fakepkg has no compiled bytecode here and Python cannot save it "
                           "(PYTHONDONTWRITEBYTECODE is set)"), hint
    assert hint.endswith(f"compile it once with: python -m compileall -q -j 0 {packages / 'fakepkg'}"), hint
    # The fix it names, run as written, makes the hint go away.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(packages / "fakepkg")], check=True,
                   env=_env(PYTHONDONTWRITEBYTECODE="1"))
    assert _hint(packages, PYTHONDONTWRITEBYTECODE="1") == "None"


def test_hint_follows_a_pycache_prefix(tmp_path):
    packages = _package(tmp_path / "site")
    prefix = tmp_path / "prefix"
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(prefix)}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(packages / "fakepkg")], check=True, env=_env())
    assert _hint(packages, PYTHONDONTWRITEBYTECODE="1") == "None"  # __pycache__ beside the source
    assert _hint(packages, **env) != "None"  # with a prefix, Python reads only the prefix's copy
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(packages / "fakepkg")], check=True,
                   env=_env(**env))
    assert _hint(packages, **env) == "None"


def test_no_hint_for_a_package_that_is_not_installed(tmp_path):
    assert _hint(tmp_path) == "None"


def test_workers_print_the_hint_once_at_start(tmp_path):
    """Through the real command: an empty queue, torch read from an empty bytecode prefix."""
    from runner.queue.store import Store

    db = str(tmp_path / "jobs.db")
    Store(db, create=True).close()
    workers = [sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--db", db, "--quiet"]
    env = _env(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(tmp_path / "empty-prefix"))
    done = subprocess.run(workers, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "torch has no compiled bytecode" in line]
    assert len(lines) == 1 and "PYTHONDONTWRITEBYTECODE is set" in lines[0], done.stderr
    quiet = subprocess.run(workers, env=_env(), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "compiled bytecode" not in quiet.stderr, quiet.stderr
