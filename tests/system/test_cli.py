"""The product end to end through the CLI: real SQLite file, real spawned workers."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest
from support.processes import EXAMPLES

FAST = ["base.steps=150", "base.n_test=256", "base.eval_every=50"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dry_run_validates_and_writes_nothing(run_cli, tmp_path):
    shutil.copy(EXAMPLES / "quickstart.yaml", tmp_path)
    out = run_cli("submit", "quickstart.yaml", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "12 jobs, all valid; a submit would add 12 new, 0 already there (dry run: nothing written to" in out.stdout
    assert not (tmp_path / "jobs.db").exists()
    assert run_cli("submit", "quickstart.yaml", "seed=0").returncode == 0  # 6 of the 12 jobs
    out = run_cli("submit", "quickstart.yaml", "--dry-run")
    assert "a submit would add 6 new, 6 already there" in out.stdout, out.stdout


def test_quickstart_end_to_end(run_cli, tmp_path):
    shutil.copy(EXAMPLES / "quickstart.yaml", tmp_path)
    sub = run_cli("submit", "quickstart.yaml", *FAST)
    assert sub.returncode == 0, sub.stderr
    assert "12 jobs, 12 added" in sub.stdout

    work = run_cli("workers", "--devices", "cpu", "--per-device", "2")
    assert work.returncode == 0, work.stderr
    assert "done 12" in work.stderr  # the final progress line

    status = run_cli("status")
    assert status.returncode == 0
    line = next(l for l in status.stdout.splitlines() if l.startswith("quickstart"))
    assert line.split()[1:] == ["0", "0", "12", "0", "0", "0", "12"]

    out = run_cli("results", "--sweep", "quickstart", "-o", "results.csv")
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(tmp_path / "results.csv")
    assert len(df) == 12
    for column in ("job_id", "sweep", "lr", "width", "seed", "status", "attempts", "final_train_loss",
                   "final_test_loss", "steps", "wall_s", "device", "host", "precision", "step_at_0.1", "step_at_0.03"):
        assert column in df.columns, column
    assert (df.status == "done").all() and (df.attempts == 1).all()
    assert df.final_test_loss.notna().all() and (df.steps == 150).all() and (df.device == "cpu").all()
    assert sorted(df.groupby(["lr", "width", "seed"]).size().tolist()) == [1] * 12

    again = run_cli("submit", "quickstart.yaml", *FAST)
    assert again.returncode == 0 and "0 added" in again.stdout
    grown = run_cli("submit", "quickstart.yaml", *FAST, "seed={range: [0, 3]}")
    assert "18 jobs, 6 added" in grown.stdout, grown.stdout + grown.stderr

    printed = run_cli("results", "--sweep", "quickstart")
    assert printed.returncode == 0 and "pending" in printed.stdout


def test_both_workers_take_jobs_and_results_come_back_in_python(run_cli, tmp_path):
    import runner
    from runner.queue.store import Store

    db = str(tmp_path / "jobs.db")
    grid = dict(sweep="py", batchfn="gaussian_teacher", model="mlp", grabs=["plugins_for_tests:first_layer"],
                base=dict(d=8, batch_size=32, steps=100, width=16, n_test=64, grab_every=50, eval_every=50),
                grid=dict(lr=[0.01, 0.02, 0.03, 0.04], seed=[0, 1]))
    report = runner.submit(grid, db=db)
    assert (report.total, report.added) == (8, 8)
    # --max-jobs 4: whichever worker is ready first cannot take all 8 (on a busy machine it could)
    work = run_cli("workers", "--devices", "cpu", "--per-device", "2", "--max-jobs", "4", "--db", db, "--quiet")
    assert work.returncode == 0, work.stderr
    df = runner.results(db, sweep="py")
    assert len(df) == 8 and (df.status == "done").all()
    store = Store(db)
    workers = {store.attempt_rows(j)[0]["worker"] for j in df.job_id}
    store.close()
    assert len(workers) == 2, workers
    arrays = runner.arrays(db, int(df.job_id[0]), "plugins_for_tests:first_layer".rpartition(":")[2])
    assert sorted(arrays) == [0, 50, 100] and arrays[0].shape == (16, 8)
    curves = runner.curves(db, sweep="py", metrics=["test_loss"])
    assert set(curves.step) == {0, 50, 100} and len(curves) == 8 * 3


def test_custom_module_example(run_cli, tmp_path):
    for name in ("custom.yaml", "my_batchfns.py"):
        shutil.copy(EXAMPLES / name, tmp_path)
    sub = run_cli("submit", "custom.yaml", "base.steps=60", "base.eval_every=20", "base.grab_every=30")
    assert sub.returncode == 0, sub.stderr
    assert run_cli("workers", "--devices", "cpu", "--quiet").returncode == 0
    import runner

    df = runner.results(str(tmp_path / "jobs.db"), sweep="custom")
    assert len(df) == 4 and (df.status == "done").all()
    curves = runner.curves(str(tmp_path / "jobs.db"), sweep="custom")
    assert {"output_scale", "cosine_to_init", "weight_norm.total"} <= set(curves.metric)


BAD_GRIDS = {
    "malformed_yaml": ("sweep: x\ngrid: {lr: [0.1, 0.2\n", "malformed"),
    "unknown_key": ("batchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8, wdith: 3}\n", "did you mean 'width'"),
    "missing_module": ("batchfn: no_such_mod:fn\nmodel: mlp\nbase: {d: 4, batch_size: 8}\n", "cannot import module 'no_such_mod'"),
    "missing_function": ("batchfn: plugins_for_tests:nope\nmodel: mlp\nbase: {d: 4, batch_size: 8}\n", "no attribute 'nope'"),
    "wrong_type": ("batchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8}\ngrid: {width: [16, wide]}\n", "width (for model) must be an integer"),
    "missing_argument": ("batchfn: gaussian_teacher\nmodel: mlp\nbase: {batch_size: 8}\n", "missing 'd'"),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_bad_input_is_one_line_exit_2_and_database_unchanged(run_cli, tmp_path, case):
    ok = tmp_path / "ok.yaml"
    ok.write_text("sweep: ok\nbatchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8, steps: 5}\n")
    assert run_cli("submit", "ok.yaml").returncode == 0
    db = tmp_path / "jobs.db"
    before = _sha(db)
    text, words = BAD_GRIDS[case]
    (tmp_path / "bad.yaml").write_text(text)
    out = run_cli("submit", "bad.yaml")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert words in lines[0]
    assert _sha(db) == before


def test_bad_input_on_a_fresh_folder_creates_no_database(run_cli, tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_GRIDS["unknown_key"][0])
    assert run_cli("submit", "bad.yaml").returncode == 2
    assert not (tmp_path / "jobs.db").exists()
    out = run_cli("status")
    assert out.returncode == 2 and "no runner database" in out.stderr
    assert not (tmp_path / "jobs.db").exists()


def test_workers_with_bad_options(run_cli, tmp_path):
    (tmp_path / "ok.yaml").write_text("batchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8, steps: 5}\n")
    assert run_cli("submit", "ok.yaml").returncode == 0
    for args, words in ((["--devices", "7"], "no GPU 7"), (["--per-device", "0"], "at least 1"), (["--devices", "gpu"], "expected 'cpu'")):
        out = run_cli("workers", *args)
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
