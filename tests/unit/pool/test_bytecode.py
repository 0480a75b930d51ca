"""The start-up hint for a torch without compiled bytecode (every worker would compile it again).

Each case runs a fresh interpreter: whether Python may write bytecode is fixed at its start."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.bytecode import bytecode_env, fake_package

PROBE = "from runner.pool.bytecode import missing_bytecode_hint as h; print(h('fakepkg'))"


def _hint(packages: Path, **env: str) -> str:
    full = bytecode_env(**env)
    full["PYTHONPATH"] = f"{packages}{os.pathsep}{full['PYTHONPATH']}"
    done = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_no_hint_when_python_will_write_the_cache_itself(tmp_path):
    assert _hint(fake_package(tmp_path)) == "None"


def test_hint_names_the_cause_and_a_fix_that_works(tmp_path):
    packages = fake_package(tmp_path)
    hint = _hint(packages, PYTHONDONTWRITEBYTECODE="1")
    assert hint.startswith("fakepkg has no compiled bytecode here and Python cannot save it "
                           "(PYTHONDONTWRITEBYTECODE is set)"), hint
    assert hint.endswith(f"compile it once with: python -m compileall -q -j 0 {packages / 'fakepkg'}"), hint
    # The fix it names, run as written, makes the hint go away.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(packages / "fakepkg")], check=True,
                   env=bytecode_env(PYTHONDONTWRITEBYTECODE="1"))
    assert _hint(packages, PYTHONDONTWRITEBYTECODE="1") == "None"


def test_hint_follows_a_pycache_prefix(tmp_path):
    packages = fake_package(tmp_path / "site")
    prefix = tmp_path / "prefix"
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(prefix)}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(packages / "fakepkg")], check=True, env=bytecode_env())
    assert _hint(packages, PYTHONDONTWRITEBYTECODE="1") == "None"  # __pycache__ beside the source
    assert _hint(packages, **env) != "None"  # with a prefix, Python reads only the prefix's copy
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(packages / "fakepkg")], check=True,
                   env=bytecode_env(**env))
    assert _hint(packages, **env) == "None"


def test_no_hint_for_a_package_that_is_not_installed(tmp_path):
    assert _hint(tmp_path) == "None"
