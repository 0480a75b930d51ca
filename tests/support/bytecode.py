"""Interpreters with given bytecode settings, and a package with no bytecode of its own."""
from __future__ import annotations

from pathlib import Path

from .processes import cli_env


def bytecode_env(**env: str) -> dict[str, str]:
    """cli_env with Python's bytecode settings exactly as given (the caller's shell may set them)."""
    full = cli_env()
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        full.pop(name, None)
    return {**full, **env}


def fake_package(tmp_path: Path) -> Path:
    (tmp_path / "fakepkg").mkdir(parents=True)
    (tmp_path / "fakepkg" / "__init__.py").write_text("VALUE = 1\n")
    return tmp_path
