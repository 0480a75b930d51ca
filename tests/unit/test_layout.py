"""The layout is the architecture: imports point one way, and this test reads them to prove it.

Every import statement of every module is read from its source (module level and inside functions
alike: a lazy import is still a dependency), resolved to the runner part it names, and checked
against the allowed directions:

    cli -> api, results, pool, queue, train, base results -> queue, base
    api -> results, pool, queue, train, base
    pool -> queue, train, base                    queue -> train, base
    train -> base                                 base (modules directly in runner/) -> base
    batchfns, grabs (built-in plug-ins) -> base
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.processes import ROOT

PARTS = ("cli", "api", "results", "pool", "queue", "train")
ALLOWED = {
    "cli": {"cli", "api", "results", "pool", "queue", "train", "base"},
    "api": {"api", "results", "pool", "queue", "train", "base"},
    "results": {"results", "queue", "base"},
    "pool": {"pool", "queue", "train", "base"},
    "queue": {"queue", "train", "base"},
    "train": {"train", "base"},
    "base": {"base"},
    "batchfns": {"batchfns", "base"},
    "grabs": {"grabs", "base"},
}
SQL_HOME = "runner.queue.store"  # the one package that may import SQLAlchemy or a database driver
DRIVERS = ("sqlalchemy", "sqlite3", "psycopg")
TORCH_FREE = (  # imported where torch must not load: the supervisor, the spawn target, submit, `import runner`
    "runner", "runner.errors", "runner.registry", "runner.hashing", "runner.text", "runner.npy", "runner.provenance",
    "runner.train", "runner.train.options", "runner.train.plan", "runner.queue.grid", "runner.queue.submission",
    "runner.pool.entry", "runner.pool.supervisor", "runner.pool.checkpoint_dir", "runner.pool.devices",
    "runner.pool.mps", "runner.pool.progress", "runner.cli",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    files = [p for package in ("runner", "batchfns", "grabs") for p in (ROOT / package).rglob("*.py")]
    return {module_name(p): p for p in sorted(files)}


def part(module: str) -> str | None:
    """The layer a module belongs to; None for what is not ours (torch, numpy...)."""
    pieces = module.split(".")
    if pieces[0] in ("batchfns", "grabs"):
        return pieces[0]
    if pieces[0] != "runner":
        return None
    return pieces[1] if len(pieces) > 1 and pieces[1] in PARTS else "base"


def imports(module: str, path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module or node.level else [target]
            found += [(node.lineno, name, id(node) in top_level) for name in names]
    return found


def targets() -> list[tuple[str, Path, int, str, bool]]:
    return [(m, p, line, name, top) for m, p in modules().items() for line, name, top in imports(m, p)]


def test_every_module_belongs_to_a_part_and_the_parts_exist():
    found = {part(m) for m in modules()}
    assert found == set(ALLOWED), found


def against_the_layering(found: list[tuple[str, Path, int, str, bool]]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: {part(m)} imports {name} ({part(name)})"
            for m, path, line, name, _ in found if part(name) is not None and part(name) not in ALLOWED[part(m)]]


def test_imports_point_one_way():
    wrong = against_the_layering(targets())
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_a_wrong_direction_is_caught():
    loop = ROOT / "runner" / "train" / "loop.py"
    planted = [("runner.train.loop", loop, 1, "runner.queue.store.Store", False),
               ("runner.results.plots", loop, 2, "runner.pool.progress", True),
               ("runner.queue.grid", loop, 3, "runner.train.options", True)]  # allowed: queue -> train
    assert against_the_layering(planted) == [
        "runner/train/loop.py:1: train imports runner.queue.store.Store (queue)",
        "runner/train/loop.py:2: results imports runner.pool.progress (pool)",
    ]


def test_only_the_store_talks_sql():
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {name}" for m, path, line, name, _ in targets()
             if name.split(".")[0] in DRIVERS and not m.startswith(SQL_HOME)]
    assert not wrong, "SQL stays in runner.queue.store:\n" + "\n".join(wrong)


def test_modules_that_must_stay_torch_free_do_not_load_it():
    """Imported one after another in a fresh interpreter: the first that loads torch is named."""
    code = ("import importlib, sys\n"
            f"for name in {list(TORCH_FREE)!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        sys.exit(f'importing {name} loaded torch')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_test_reads_lazy_imports_too():
    found = {name for _, name, top in imports("runner.pool.entry", modules()["runner.pool.entry"]) if not top}
    assert "runner.pool.worker.Worker" in found  # imported inside worker_main, after the device is pinned
