"""Reading results back (issue 6): results(), curves(), grid_array(), arrays() and the CLI views
(results, jobs, show, status, status --watch) on an empty database, a running sweep and a finished one.

Jobs and their outcomes are written through the Store API, as workers write them, so every value
read back is known exactly.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from support.grid_db import (
    FAILS,
    MISSING,
    RUNS,
    STEPS,
    SWEEP,
    TRACEBACK,
    WORKER,
    build,
    config,
    curve,
    job_id_of,
    loss,
)

import runner
from runner.cli import main
from runner.errors import UserError
from runner.queue.store import JobOutcome, JobStatus, Store
from runner.results.reading import SUMMARY_COLUMNS
from runner.results.views import jobs_lines, show_lines, status_lines


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three databases, built once: empty, running (one job claimed) and finished."""
    folder = tmp_path_factory.mktemp("results")
    Store(str(folder / "empty.db"), create=True).close()
    return {"empty": str(folder / "empty.db"), "running": build(folder / "running.db", running=True),
            "finished": build(folder / "finished.db", running=False)}


# --- Python API ------------------------------------------------------------------------------------
def test_results_has_the_contract_columns_and_the_values_jobs_wrote(dbs):
    df = runner.results(dbs["finished"], sweep=SWEEP)
    assert list(df.columns) == ["job_id", "sweep", "lr", "width", "seed", "steps", *SUMMARY_COLUMNS,
                                "cuda_visible_devices", "step_at_0.5", "error"]
    assert len(df) == 7 and df.job_id.is_unique
    for row in df.to_dict("records"):
        c = config(row["lr"], row["width"], row["seed"])
        assert row["sweep"] == SWEEP and row["attempts"] == 1 and row["device"] == "cpu" and row["host"] == "testhost"
        if c == config(**FAILS):
            assert row["status"] == "failed" and np.isnan(row["final_test_loss"]) and row["error"] == "ValueError: boom"
            assert row["wall_s"] == 0.25 and pd.isna(row["step_at_0.5"])
        else:
            assert row["status"] == "done" and pd.isna(row["error"])
            assert row["final_test_loss"] == loss(c) and row["final_train_loss"] == loss(c) * 0.9
            assert row["steps_run"] == STEPS[-1] and row["steps"] == STEPS[-1] and row["wall_s"] == 1.5
            assert row["precision"] == "fp32" and row["step_at_0.5"] == 10


def test_steps_run_of_results_written_before_the_rename_and_the_config_key_steps_keep_their_names(tmp_path):
    """Issue 15 item 13: the summary column is `steps_run`, so the config key `steps` is no longer
    renamed `steps_config`; a database whose summaries still say `steps` reads the same."""
    db = str(tmp_path / "old.db")
    with Store(db, create=True) as store:
        store.add_jobs("old", [("a", {"lr": 0.1, "steps": 300}), ("b", {"lr": 0.2, "steps": 300})])
        for summary in ({"steps": 120, "final_test_loss": 0.5}, {"steps_run": 300, "final_test_loss": 0.25}):
            job = store.claim("w", host="h", device="cpu")
            store.finish(job.id, job.token, JobOutcome(JobStatus.DONE, summary))
    df = runner.results(db, sweep="old").sort_values("lr")
    assert "steps_config" not in df.columns and df.steps.tolist() == [300, 300]
    assert df.steps_run.tolist() == [120, 300]


def test_results_of_a_running_sweep_and_an_empty_database(dbs):
    df = runner.results(dbs["running"])  # every sweep
    running = df[df.status == "running"]
    assert len(running) == 1 and running.device.iloc[0] == "cpu" and running.host.iloc[0] == "testhost"
    assert running.final_test_loss.isna().all() and running.attempts.iloc[0] == 1
    empty = runner.results(dbs["empty"])
    assert len(empty) == 0 and list(empty.columns) == ["job_id", "sweep", *SUMMARY_COLUMNS, "error"]
    with pytest.raises(UserError, match="no sweep 'nope'"):
        runner.results(dbs["finished"], sweep="nope")


def test_curves_are_long_form_with_the_config_joined(dbs):
    cv = runner.curves(dbs["finished"], sweep=SWEEP)
    assert list(cv.columns) == ["job_id", "step", "metric", "value", "sweep", "lr", "width", "seed", "steps"]
    assert len(cv) == 6 * 2 * len(STEPS)  # 6 done jobs, 2 metrics, 3 steps; the failed job wrote none
    for row in cv.itertuples():
        c = config(row.lr, row.width, row.seed)
        assert row.value == pytest.approx(curve(c, row.step) * (1.0 if row.metric == "test_loss" else 0.9))
    by_lr = cv[(cv.metric == "test_loss") & (cv.step == 20)].groupby("lr").value.count()
    assert by_lr.to_dict() == {0.01: 3, 0.1: 3}
    one = runner.curves(dbs["finished"], sweep=SWEEP, metrics="test_loss", job_ids=[1, 2])
    assert set(one.metric) == {"test_loss"} and set(one.job_id) == {1, 2} and len(one) == 2 * len(STEPS)
    assert len(runner.curves(dbs["finished"], sweep=SWEEP, metrics=["no_such_metric"])) == 0
    assert len(runner.curves(dbs["empty"])) == 0


def test_grid_array_is_indexed_by_sorted_axis_values_and_masks_missing_cells(dbs):
    g = runner.grid_array(dbs["finished"], sweep=SWEEP, value="final_test_loss", axes=["lr", "width", "seed"])
    assert isinstance(g, runner.GridArray) and g.axes == ("lr", "width", "seed") and g.shape == (2, 2, 2)
    assert g.coords == {"lr": [0.01, 0.1], "width": [8, 16], "seed": [0, 1]}
    for i, lr in enumerate(g.coords["lr"]):
        for j, width in enumerate(g.coords["width"]):
            for k, seed in enumerate(g.coords["seed"]):
                cell = {"lr": lr, "width": width, "seed": seed}
                if cell in (MISSING, FAILS):
                    assert g.values.mask[i, j, k], cell
                else:
                    assert not g.values.mask[i, j, k] and g.values[i, j, k] == loss(config(**cell))
                assert bool(g.job_ids.mask[i, j, k]) == (cell == MISSING)
    assert g.values.count() == 6 and g.job_ids.count() == 7
    assert g.job_ids[1, 0, 0] == job_id_of(dbs["finished"], {"lr": 0.1, "width": 8, "seed": 0})
    seed0 = runner.grid_array(dbs["finished"], sweep=SWEEP, axes=["width", "lr"], where={"seed": 0})
    assert seed0.shape == (2, 2) and seed0.values[0, 1] == loss(config(0.1, 8, 0))
    walls = runner.grid_array(dbs["finished"], value="wall_s", axes=("lr", "width", "seed"))
    assert walls.values.count() == 7  # the failed job has a wall time


def test_grid_array_names_the_keys_that_vary_within_a_cell_and_other_mistakes(dbs):
    crowded = r"3 cells of axes \['lr', 'width'\] hold several jobs: seed also varies there; add them to axes"
    with pytest.raises(UserError, match=crowded + r".*where=\{'seed'"):  # (0.1, 8) holds one job: seed 1 is missing
        runner.grid_array(dbs["finished"], sweep=SWEEP, axes=["lr", "width"])
    with pytest.raises(UserError, match="axis 'wdith' is not a config key.*lr, width, seed, steps"):
        runner.grid_array(dbs["finished"], sweep=SWEEP, axes=["lr", "wdith"])
    with pytest.raises(UserError, match="no summary value 'final_loss'.*final_test_loss"):
        runner.grid_array(dbs["finished"], sweep=SWEEP, value="final_loss", axes=["lr", "width", "seed"])
    with pytest.raises(UserError, match="no summary value 'device'"):
        runner.grid_array(dbs["finished"], sweep=SWEEP, value="device", axes=["lr", "width", "seed"])
    with pytest.raises(UserError, match="needs axes"):
        runner.grid_array(dbs["finished"], sweep=SWEEP)
    empty = runner.grid_array(dbs["finished"], sweep=SWEEP, axes=["lr", "width", "seed"], where={"seed": 7})
    assert empty.shape == (0, 0, 0)


def test_arrays_by_step_and_clear_errors(dbs):
    job = job_id_of(dbs["finished"], {"lr": 0.1, "width": 8, "seed": 0})
    got = runner.arrays(dbs["finished"], job, "w")
    assert sorted(got) == [0, 20] and np.array_equal(got[20], np.arange(3.0) * 20)
    assert sorted(runner.arrays(dbs["finished"], job, "my_grabs:w")) == [0, 20]  # a grab's import path works too
    with pytest.raises(UserError, match="no job 999"):
        runner.arrays(dbs["finished"], 999, "w")
    with pytest.raises(UserError, match=f"job {job} has no array 'v'; arrays there: w"):
        runner.arrays(dbs["finished"], job, "v")
    failed = job_id_of(dbs["finished"], FAILS)
    with pytest.raises(UserError, match="arrays there: none"):
        runner.arrays(dbs["finished"], failed, "w")


# --- CLI views -------------------------------------------------------------------------------------
def cli(*args: str) -> tuple[int, str, str]:
    """Run `runner ARGS` in this process (fast); (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("state", ["empty", "running", "finished"])
def test_every_view_on_every_state(dbs, state, tmp_path):
    db = dbs[state]
    code, out, err = cli("results", "--db", db)
    assert code == 0, err
    code, _, err = cli("results", "--db", db, "-o", str(tmp_path / "r.csv"))
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "r.csv")) == {"empty": 0, "running": 7, "finished": 7}[state]
    code, jobs_out, err = cli("jobs", "--db", db)
    assert code == 0, err
    code, status_out, err = cli("status", "--db", db)
    assert code == 0, err
    code, show_out, show_err = cli("show", "1", "--db", db)
    if state == "empty":
        assert out.strip() == "(no jobs)" and jobs_out.strip().startswith("(no jobs in ")
        assert "(no jobs in " in status_out
        assert code == 2 and show_err.startswith("error: no job 1 in ") and len(show_err.strip().splitlines()) == 1
        return
    assert code == 0, show_err
    counts = next(line for line in status_out.splitlines() if line.startswith(SWEEP)).split()[1:]
    failures = status_out.split("last failures:")[1]
    assert f"({SWEEP}) attempt 1 failed" in failures and "ValueError: boom" in failures
    assert "throughput over the last 5m00s" in status_out
    lines = jobs_out.splitlines()
    assert lines[0].split() == ["id", "sweep", "status", "attempts", "device", "wall_s", "config", "error"]
    assert len(lines) == 8 and "ValueError: boom" in jobs_out and "lr=0.1 width=8 seed=0" in jobs_out
    if state == "running":
        assert counts == ["0", "1", "5", "1", "0", "0", "7"]
        assert "workers: 1 live:" in status_out
        worker = next(line for line in status_out.splitlines() if line.strip().startswith("testhost"))
        assert worker.split()[:4] == ["testhost", "cpu", "4242", str(job_id_of(db, RUNS))]
        assert "running" in out
        held = job_id_of(db, RUNS)
        code, held_out, _ = cli("show", str(held), "--db", db)
        assert code == 0 and f"job {held}  sweep {SWEEP}  running" in held_out
        assert "summary: none (the job has not finished)" in held_out and "running" in held_out.split("attempts:")[1]
    else:
        assert counts == ["0", "0", "6", "1", "0", "0", "7"]
        assert "workers: 0 live, 1 exited" in status_out
        throughput = status_out.split("throughput over the last 5m00s:")[1].splitlines()
        assert throughput[1].split() == ["sweep", "finished", "jobs/min", "left", "ETA"]
        assert throughput[2].split()[:2] == [SWEEP, "7"] and throughput[2].split()[-2:] == ["0", "done"]
        assert "lr=0.1 width=8 seed=0" in jobs_out
    assert "config:\n  lr: 0.1\n  width: 8\n  seed: 0\n  steps: 20" in show_out
    assert f"final_test_loss: {loss(config(0.1, 8, 0)):g}" in show_out
    metrics = show_out.split("metrics:")[1].split("arrays:")[0].split()
    last = f"{curve(config(0.1, 8, 0), 20):.4g}"
    assert metrics[:8] == ["name", "points", "steps", "last", "test_loss", "3", "0..20", last]
    assert show_out.split("arrays:")[1].split()[4:7] == ["w", "2", "0..20"]


def test_show_of_a_failed_job_prints_its_traceback(dbs):
    failed = job_id_of(dbs["finished"], FAILS)
    code, out, err = cli("show", str(failed), "--db", dbs["finished"])
    assert code == 0, err
    assert f"job {failed}  sweep {SWEEP}  failed  attempt 1 of 1" in out
    assert out.rstrip().endswith("error:\n" + "\n".join("  " + line for line in TRACEBACK.rstrip().splitlines()))
    attempt = out.split("attempts:")[1].splitlines()[2].split()
    assert attempt[:2] == ["1", WORKER] and "failed" in attempt and attempt[-2:] == ["ValueError:", "boom"]
    assert "metrics: none" in out and "arrays: none" in out


def test_jobs_filters_and_limit(dbs):
    code, out, _ = cli("jobs", "--db", dbs["finished"], "--state", "failed")
    assert code == 0 and len(out.splitlines()) == 2 and " failed " in out.splitlines()[1]
    code, out, _ = cli("jobs", "--db", dbs["finished"], "--state", "done", "--limit", "2", "--sweep", SWEEP)
    assert code == 0 and "error" not in out.splitlines()[0]
    assert out.splitlines()[-1] == "(2 of 6 done jobs shown: raise --limit, or narrow with --state, --sweep)"
    code, out, _ = cli("jobs", "--db", dbs["finished"], "--state", "pending")
    assert code == 0 and out.startswith("(no pending jobs in ")


@pytest.mark.parametrize("args, words", [
    (["jobs", "--sweep", "nope"], "no sweep 'nope' in sqlite:///"),
    (["jobs", "--sweep", "nope"], f"(sweeps there: {SWEEP})"),
    (["status", "--sweep", "nope"], "no sweep 'nope'"),
    (["results", "--sweep", "nope"], "no sweep 'nope'"),
    (["results", "-o", "out.txt"], "must end in .csv, .parquet or .json"),
    (["show", "abc"], "'abc' is not a valid integer"),
    (["jobs", "--limit", "0"], "0 is not in the range x>=1"),
    (["jobs", "--state", "lost"], "'lost' is not one of"),
    (["status", "--interval", "0"], "x>=0.1"),
])
def test_user_errors_are_one_line_and_exit_2(dbs, args, words):
    code, out, err = cli(*args, "--db", dbs["finished"])
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")


def test_a_missing_database_is_a_user_error_for_every_view(tmp_path):
    for args in (["results"], ["jobs"], ["show", "1"], ["status"], ["status", "--watch"]):
        code, _, err = cli(*args, "--db", str(tmp_path / "none.db"))
        assert code == 2 and "no runner database" in err, (args, err)
    assert not (tmp_path / "none.db").exists()


@pytest.mark.postgres
def test_reads_and_views_on_postgresql_match_sqlite(dbs, pg_url):
    db = build(pg_url, running=True)
    columns = ["job_id", "lr", "width", "seed", "status", "attempts", "final_test_loss", "device", "host", "error"]
    pg, lite = runner.results(db, sweep=SWEEP), runner.results(dbs["running"], sweep=SWEEP)
    assert list(pg.columns) == list(lite.columns)
    assert pg[columns].astype(str).equals(lite[columns].astype(str))
    pg_curves, lite_curves = (runner.curves(d, metrics=["test_loss"]) for d in (db, dbs["running"]))
    assert pg_curves.astype(str).equals(lite_curves.astype(str))
    pg_grid, lite_grid = (runner.grid_array(d, sweep=SWEEP, axes=["lr", "width", "seed"]) for d in (db, dbs["running"]))
    assert pg_grid.values.tolist() == lite_grid.values.tolist() and pg_grid.coords == lite_grid.coords
    assert sorted(runner.arrays(db, 1, "w")) == [0, 20]
    with Store(db) as store, Store(dbs["running"]) as other:
        assert jobs_lines(store) == jobs_lines(other)
        def timeless(lines: list[str]) -> list[str]:
            return [re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "T", line) for line in lines]
        assert timeless(show_lines(store, 7)) == timeless(show_lines(other, 7))
        status = status_lines(store)
        assert status[1].split()[1:] == ["0", "1", "5", "1", "0", "0", "7"] and "workers: 1 live:" in status


def test_export_round_trips_through_json(dbs, tmp_path):
    df = runner.results(dbs["finished"], sweep=SWEEP)
    code, out, err = cli("results", "--db", dbs["finished"], "-o", str(tmp_path / "r.json"))
    assert code == 0 and out.strip() == f"wrote 7 rows to {tmp_path / 'r.json'}", err
    back = json.loads((tmp_path / "r.json").read_text())
    assert [r["job_id"] for r in back] == df.job_id.tolist()
    assert [r["final_test_loss"] for r in back if r["status"] == "done"] == df.final_test_loss.dropna().tolist()


def test_status_gives_no_eta_while_no_worker_is_live(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="idle", batchfn="gaussian_teacher", model="mlp", base=dict(d=3, batch_size=4),
                       grid=dict(seed=[0, 1])), db=db)
    with Store(db) as store:
        lines = status_lines(store)
    row = next(line for line in lines if line.strip().startswith("idle") and "no live worker" in line)
    assert row.split()[-4:] == ["2", "no", "live", "worker"]  # 2 left, and nobody to run them
