"""User mistakes through the real CLI: each ends in exit code 2 and one line on stderr that names
the cause (and the fix), with no traceback, and leaves every file as it was: an existing database
keeps its bytes and gains no -wal/-journal/-shm file, and no database appears where none was."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.databases import write_sqlite
from support.hostile import ALIAS_BOMB, CONFIG_BOMB, MERGE_BOMB, OK
from support.processes import cli_env

from runner.queue.store import SCHEMA_VERSION

SIDE_FILES = ("-wal", "-journal", "-shm")


def _ok_with(base: str = "", extra: str = "") -> str:
    """The OK grid with more base entries (`key: value, ...`) and more top-level YAML."""
    return OK.replace("steps: 5}", f"steps: 5{', ' + base if base else ''}}}") + extra


@dataclass(frozen=True)
class Case:
    """One mistake: the CLI arguments, the words its error line must hold, the starting files."""

    args: tuple[str, ...]
    words: tuple[str, ...]
    grid: str | None = None           # written to grid.yaml
    db: str = "runner"                # what jobs.db holds before: a key of DATABASES, or "none"
    db_path: str = "jobs.db"          # the database the command is pointed at (relative to the folder)
    env: dict[str, str] = field(default_factory=dict)


# The grid of the issue: once, submit passed it and the worker ran the shell command (pwned.txt would
# appear in the folder, which the table checks is left as it was).
SHELL_GRID = _ok_with('command: "id > pwned.txt"').replace("model: mlp", 'model: "os:system"')


def submit(grid: str, *args: str, **kw) -> Case:
    """A submit of grid.yaml (holding `grid`) with extra arguments."""
    words = kw.pop("words")
    return Case(("submit", "grid.yaml", *args), tuple(words), grid=grid, **kw)


CASES: dict[str, Case] = {
    # --- the grid file -------------------------------------------------------------------------
    "malformed_yaml": submit("sweep: x\ngrid: {lr: [0.1, 0.2\n", words=["malformed YAML at line", "fix the YAML"]),
    "empty_file": submit("", words=["the grid file is empty", "write at least sweep:"]),
    "top_level_is_a_list": submit("- 1\n- 2\n", words=["top level must be a mapping", "not a list"]),
    "empty_axis": submit(OK + "grid: {lr: []}\n", words=["grid.lr has no values", "give at least one"]),
    "axis_without_values": submit(OK + "grid: {lr: }\n", words=["grid.lr is empty", "give its values"]),
    "unknown_top_level_key": submit(OK.replace("base:", "bsae:"), words=["unknown top-level key 'bsae'",
                                                                         "did you mean 'base'?"]),
    "unknown_trainloop_key": submit(_ok_with("stpes: 9"), words=["unknown key 'stpes'", "did you mean 'steps'?"]),
    "wrong_type": submit(_ok_with("lr: fast"), words=["lr must be a number, got 'fast'"]),
    "change_to_null_batch": submit(_ok_with("changes: [{at: 2, batch_size: null}]"),
                                   words=["batch_size: null is not a change", "set batch_size to n_train"]),
    "change_to_null_lr": submit(_ok_with("changes: [{at: 2, lr: null}]"), words=["lr: null changes nothing"]),
    "fuse_not_a_number": submit(_ok_with("fuse: lots"), words=["fuse must be auto or an integer >= 1", "'lots'"]),
    "negative_timeout": submit(_ok_with("timeout: -1"), words=["timeout must be >= 0, got -1"]),
    "negative_steps": submit(OK.replace("steps: 5", "steps: -5"), words=["steps must be >= 0, got -5"]),
    "range_arity": submit(OK + "grid: {seed: {range: [0, 1, 2, 3]}}\n",
                          words=["range takes a list of 1, 2 or 3 numbers", "write {range: [stop]}"]),
    "generator_typo": submit(OK + "grid: {seed: {rnage: [3]}}\n", words=["a mapping is not an axis",
                                                                         "did you mean 'range'?"]),
    "zip_unequal_lengths": submit(OK + "zip: [{n_train: [8, 16], batch_size: [8]}]\n",
                                  words=["zip[0] lists have unequal lengths (n_train has 2, batch_size has 1)",
                                         "same length"]),
    "duplicate_axis_key": submit(OK + "grid:\n  lr: [0.1]\n  lr: [0.2]\n", words=["duplicate key 'lr'", "remove one"]),
    "axis_in_grid_and_zip": submit(OK + "grid: {lr: [0.1]}\nzip: [{lr: [0.2], seed: [1]}]\n",
                                   words=["'lr' is set in both grid: and zip group 0", "remove it from grid:"]),
    "repeated_axis_value": submit(OK + "grid: {lr: [0.1, 0.1]}\n", words=["0.1 appears twice", "remove one"]),
    "exclude_names_no_axis": submit(OK + "grid: {lr: [0.1, 0.2]}\nexclude: [{lr: 0.1, wdith: 8}]\n",
                                    words=["exclude[0] names 'wdith', which is not a grid or zip axis"]),
    "missing_batchfn_module": submit(OK.replace("gaussian_teacher", "no_such_module:make"),
                                     words=["cannot import module 'no_such_module'", "PYTHONPATH"]),
    "missing_function_in_module": submit(OK.replace("gaussian_teacher", "plugins_for_tests:linear_teachr"),
                                         words=["module 'plugins_for_tests' has no attribute 'linear_teachr'",
                                                "did you mean 'plugins_for_tests:linear_teacher'?"]),
    "function_in_main": submit(OK.replace("gaussian_teacher", "__main__:make_batch"),
                               words=["is defined in __main__", "move make_batch into a .py file"]),
    "unknown_model": submit(OK.replace("model: mlp", "model: mpl"), words=["unknown model 'mpl'",
                                                                           "did you mean 'mlp'?"]),
    "grid_file_missing": Case(("submit", "no_such_grid.yaml"), ("no_such_grid.yaml: file not found", "check the path")),
    # --- command-line overrides ----------------------------------------------------------------
    "override_unknown_key": submit(OK, "wdith=16", words=["unknown key 'wdith'", "did you mean 'width'?"]),
    "override_unparsable_value": submit(OK, "lr=[0.1", words=["override 'lr=[0.1'", "malformed YAML"]),
    "override_not_key_value": submit(OK, "lr", words=["override 'lr' is not KEY=VALUE", "e.g. lr=0.01,0.1"]),
    "override_empty_item": submit(OK, "lr=0.1,,0.2", words=["has an empty item in its comma list"]),
    # --- the database ----------------------------------------------------------------------------
    "db_folder_missing": submit(OK, "--db", "nowhere/jobs.db", db="none", db_path="nowhere/jobs.db",
                                words=["nowhere for the database", "does not exist: create it or choose another --db"]),
    "db_is_a_text_file": Case(("status",), ("is not a SQLite database", "choose another --db"), db="text"),
    "db_is_random_bytes": Case(("cancel", "--sweep", "ok"), ("is not a SQLite database", "choose another --db"),
                               db="random"),
    "db_of_another_program": submit(OK, db="foreign", words=["is a database of another program (tables: users)",
                                                             "choose another --db"]),
    "db_of_another_program_status": Case(("status",), ("is a database of another program",), db="foreign"),
    "db_schema_newer": Case(("status",), (f"was made by a newer runner (schema {SCHEMA_VERSION + 1} > {SCHEMA_VERSION})",
                                          "upgrade runner"), db="newer"),
    # (URLs with a password come through RUNNER_DB: typed into --db they also get a warning, test_secrets.py)
    "db_unreachable_url": Case(("status",),
                               ("cannot open the database postgresql+psycopg://u:***@127.0.0.1:1/x", "check that the server runs"),
                               db="none", env={"RUNNER_DB": "postgresql+psycopg://u:pw@127.0.0.1:1/x"}),
    "db_url_from_env": Case(("results",), ("postgresql+psycopg://u:***@127.0.0.1:1/x", "check that the server runs"),
                            db="none", env={"RUNNER_DB": "postgresql+psycopg://u:pw@127.0.0.1:1/x"}),
    "db_malformed_url": Case(("status",),
                             ("cannot use the database URL postgresql://u:***@host:port/x", "pass a file path"),
                             db="none", env={"RUNNER_DB": "postgresql://u:pw@host:port/x"}),
    "db_unknown_driver": Case(("status", "--db", "nosuchdb://host/x"),
                              ("cannot use the database URL nosuchdb://host/x", "sqlite:///path/jobs.db"), db="none"),
    "db_in_memory": Case(("status", "--db", "sqlite://"), ("cannot share an in-memory database",), db="none"),
    "status_without_db": Case(("status",), ("no runner database at", "run `runner submit` first"), db="none"),
    "results_without_db": Case(("results",), ("no runner database at", "run `runner submit` first"), db="none"),
    "cancel_without_db": Case(("cancel", "1"), ("no runner database at",), db="none"),
    "workers_without_db": Case(("workers", "--devices", "cpu"), ("no runner database at",), db="none"),
    # --- workers options -------------------------------------------------------------------------
    "devices_missing_gpu": Case(("workers", "--devices", "7"), ("there is no GPU 7", "use --devices cpu")),
    "devices_garbage": Case(("workers", "--devices", "0,,x"), ("--devices '0,,x'", "expected 'cpu' or GPU indices",
                                                                "--devices cpu")),
    "per_device_zero": Case(("workers", "--devices", "cpu", "--per-device", "0"), ("--per-device must be at least 1",)),
    "per_device_negative": Case(("workers", "--devices", "cpu", "--per-device", "-1"),
                                ("--per-device must be at least 1, got -1",)),
    "per_device_not_a_number": Case(("workers", "--devices", "cpu", "--per-device", "two"),
                                    ("'two' is not a valid integer", "workers --help")),
    "lease_zero": Case(("workers", "--devices", "cpu", "--lease", "0"), ("--lease must be a number of seconds from 1",)),
    "lease_inf": Case(("workers", "--devices", "cpu", "--lease", "inf"), ("--lease must be", "got inf")),
    "lease_tiny": Case(("workers", "--devices", "cpu", "--lease", "1e-6"), ("--lease must be", "got 1e-06")),
    "per_device_huge": Case(("workers", "--devices", "cpu", "--per-device", "100000"), ("--per-device must be at most 64",)),
    "lease_negative": Case(("workers", "--devices", "cpu", "--lease", "-5"), ("--lease must be a number of seconds", "-5")),
    "max_jobs_zero": Case(("workers", "--devices", "cpu", "--max-jobs", "0"), ("--max-jobs must be at least 1",)),
    "fuse_zero": Case(("workers", "--devices", "cpu", "--fuse", "0"), ("--fuse takes auto or a number", "each job trains alone")),
    "fuse_word": Case(("workers", "--devices", "cpu", "--fuse", "many"), ("--fuse takes auto or a number", "got 'many'")),
    # --- cancel, retry, status, results ----------------------------------------------------------
    "cancel_missing_job": Case(("cancel", "999"), ("no job 999 in", "check the ids with `runner results`")),
    "cancel_missing_sweep": Case(("cancel", "--sweep", "nosuch"), ("no sweep 'nosuch'", "sweeps there: ok",
                                                                  "runner status")),
    "cancel_names_nothing": Case(("cancel",), ("name job ids or --sweep NAME",)),
    "retry_missing_sweep": Case(("retry", "--sweep", "nosuch"), ("no sweep 'nosuch'", "sweeps there: ok",
                                                                "runner status")),
    "status_missing_sweep": Case(("status", "--sweep", "nosuch"), ("no sweep 'nosuch'", "sweeps there: ok",
                                                                  "runner status")),
    "results_missing_sweep": Case(("results", "--sweep", "nosuch"), ("no sweep 'nosuch'", "sweeps there: ok",
                                                                    "runner status")),
    "results_bad_output_suffix": Case(("results", "-o", "out.xlsx"), ("must end in .csv, .parquet or .json",)),
    "unknown_command": Case(("sumbit", "grid.yaml"), ("No such command 'sumbit'", "Did you mean 'submit'?")),
    # --- hostile input (issue 16 item 4): refused fast, in one line --------------------------------
    "yaml_alias_bomb": submit(ALIAS_BOMB, words=["expands to more than 1,000,000 values", "YAML aliases"]),
    # PyYAML 6.0.3 and older copy merged keys at every level (our bound stops it: "merge keys (<<) expand
    # to more than 100,000 entries"); 6.0.4 merges each key once, and the file is refused as a bad grid
    "yaml_merge_key_bomb": submit(MERGE_BOMB, words=["grid.yaml: "]),
    "yaml_nested_600_deep": submit("a: " + "[" * 600 + "]" * 600 + "\n", words=["nests too deep"]),
    "grid_file_of_2_mb": submit(OK + "# " + "x" * (2 << 20) + "\n", words=["a grid file is at most 1,048,576"]),
    "config_bomb_under_a_base_key": submit(CONFIG_BOMB, words=["a job of this grid holds up to 342,403 values",
                                                                "more than 100,000"]),
    "config_with_a_300_kb_string": submit(_ok_with("note: " + "x" * 300_000),
                                          words=["a job's config is", "bytes of JSON, more than 262,144"]),
    "priority_beyond_64_bits": submit(OK, "priority=" + "1" + "0" * 30, words=["base.priority is 1000000000000",
                                                                              "beyond what a 64-bit integer holds"]),
    "max_attempts_beyond_64_bits": submit(OK, "max_attempts=" + "1" + "0" * 30, words=["64-bit integer"]),
    "seed_axis_beyond_64_bits": submit(OK, "seed=1,99999999999999999999", words=["grid.seed[1]", "64-bit"]),
    "show_beyond_64_bits": Case(("show", "9223372036854775808"), ("9223372036854775808 is not in the range",)),
    "cancel_beyond_64_bits": Case(("cancel", "99999999999999999999"), ("99999999999999999999 is not in the range",)),
    "plugin_parameter_named_priority": submit(OK.replace("gaussian_teacher", "plugins_for_tests:priority_teacher"),
                                              words=["takes a parameter named 'priority'", "rename the parameter"]),
    "sweep_name_with_escape_codes": submit(OK.replace("sweep: ok", 'sweep: "ok\\e[2J\\e[Hfake"'),
                                           words=["holds control characters", "\\x1b[2J"]),
    # --- the plug-in policy (issue 16 item 2): refused before anything is imported or called -----------
    "model_os_system": submit(SHELL_GRID, words=["model 'os:system' is refused: os is the standard library",
                                                 "from a .py file of yours", "RUNNER_PLUGIN_PACKAGES=os"]),
    "model_os_system_dry_run": submit(SHELL_GRID, "--dry-run", words=["model 'os:system' is refused"]),
    "batchfn_subprocess_run": submit(OK.replace("gaussian_teacher", '"subprocess:run"'),
                                     words=["batchfn 'subprocess:run' is refused: subprocess is the standard library"]),
    "model_third_party_class": submit(OK.replace("model: mlp", 'model: "torch.nn:Linear"'),
                                      words=["torch is an installed third-party package", "RUNNER_PLUGIN_PACKAGES=torch"]),
    "model_runner_internal": submit(OK.replace("model: mlp", 'model: "runner.queue.store:Store"'),
                                    words=["runner is runner's own package", "@runner.model registered"]),
    "model_a_batch_function": submit(OK.replace("model: mlp", 'model: "plugins_for_tests:linear_teacher"'),
                                     words=["a model must be an nn.Module subclass (got a function)"]),
}


def _runner_db(folder: Path) -> Path:
    """A real runner database made by the CLI: sweep 'ok' with two pending jobs."""
    (folder / "ok.yaml").write_text(OK + "grid: {seed: [0, 1]}\n")
    out = subprocess.run([sys.executable, "-m", "runner.cli", "submit", "ok.yaml"], cwd=folder, env=cli_env(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    return folder / "jobs.db"


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of each kind of database file a case starts from."""
    folder = tmp_path_factory.mktemp("databases")
    db = _runner_db(folder)
    newer = folder / "newer.db"
    shutil.copy(db, newer)
    write_sqlite(newer, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    foreign = write_sqlite(folder / "foreign.db", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
                           "INSERT INTO users (name) VALUES ('ada')")
    assert not any(p.name.endswith(SIDE_FILES) for p in folder.iterdir())
    return {"runner": db.read_bytes(), "newer": newer.read_bytes(), "foreign": foreign.read_bytes(),
            "text": b"sweep results, not a database\n", "random": random.Random(7).randbytes(8192)}


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under folder, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_a_user_mistake_is_one_line_exit_2_and_writes_nothing(name, run_cli, tmp_path, databases):
    case = CASES[name]
    if case.grid is not None:
        (tmp_path / "grid.yaml").write_text(case.grid)
    db = tmp_path / case.db_path
    if case.db != "none":
        db.write_bytes(databases[case.db])
    before = _files(tmp_path)

    out = run_cli(*case.args, env=case.env)

    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and len(lines) == 1, out.stderr
    assert lines[0].startswith("error: "), lines[0]
    for words in case.words:
        assert words in lines[0], (words, lines[0])
    if case.db == "none":
        assert not db.exists(), "a database was created"
    else:
        assert db.read_bytes() == before[case.db_path], "the database changed"
    for suffix in SIDE_FILES:
        assert Path(f"{db}{suffix}").exists() == (f"{case.db_path}{suffix}" in before), suffix
    assert _files(tmp_path) == before  # nothing else was written either


def test_more_cpu_workers_than_the_cores_can_hold_is_refused(run_cli, tmp_path):
    """--devices cpu --per-device 100000 once spawned 131 processes in 8 s: at most 4 per core."""
    many = 4 * (os.cpu_count() or 1) + 1
    if many > 64:
        pytest.skip(f"{os.cpu_count()} cores: --per-device {many} hits the per-device cap of 64 first")
    out = run_cli("workers", "--devices", "cpu", "--per-device", str(many), "--db", str(tmp_path / "jobs.db"))
    assert out.returncode == 2 and "CPU workers on" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "jobs.db").exists()
