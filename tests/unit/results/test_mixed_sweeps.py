"""A sweep that is not one grid (issue 15 item 14): resubmitting with a changed base value (the README's
own `overrides=["base.steps=500"]`) adds jobs that differ in a key no grid of the sweep varies. The
submit says so, naming the key; curves and learning curves draw such jobs apart, a heatmap refuses to
average them, and the report keeps them apart in its tables. More seeds, or a longer axis, are still
one grid. A sweep an older runner submitted (no recorded axes) reads as before."""
from __future__ import annotations

import warnings

import pytest
import yaml
from support.databases import sql

import runner
from runner.errors import UserError
from runner.queue.store import JobOutcome, JobStatus, Store
from runner.queue.submission import MixedSweepWarning
from runner.results.plots import plot_curves, plot_heatmap, plot_scaling
from runner.results.report import write_report

GRID = {"sweep": "mixed", "batchfn": "gaussian_teacher", "model": "mlp",
        "base": {"d": 4, "batch_size": 8, "steps": 300, "eval_every": 100},
        "grid": {"lr": [0.1, 0.2], "width": [8, 16], "seed": [0, 1]}}


def _finish_all(db: str) -> None:
    """Finish every pending job as a worker would: a test-loss curve whose end depends on lr and steps."""
    with Store(db) as store:
        while (job := store.claim("w", host="h", device="cpu")) is not None:
            c, end = job.config, job.config["steps"]
            final = c["lr"] + c["width"] / 100 + 1.0 / end
            points = [(s, "test_loss", final * (2 - s / end)) for s in range(0, end + 1, 100)]
            store.finish(job.id, job.token, JobOutcome(JobStatus.DONE, {"final_test_loss": final, "steps_run": end},
                                                       metrics=points))


@pytest.fixture
def mixed(tmp_path) -> str:
    db = str(tmp_path / "jobs.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first submit warns of nothing
        first = runner.submit(GRID, db=db)
    assert first.outside == {}
    with pytest.warns(MixedSweepWarning, match=r"differ in steps \(300, 500\), which no grid of it varies"):
        again = runner.submit(GRID, db=db, overrides=["base.steps=500"])
    assert again.added == 8 and again.outside == {"steps": [300, 500]}
    _finish_all(db)
    return db


def test_the_submit_names_the_key_outside_the_grid_on_its_own_line(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(GRID))
    assert run_cli("submit", str(grid), "--db", db).stderr == ""
    dry = run_cli("submit", str(grid), "base.steps=500", "--db", db, "--dry-run")
    assert dry.returncode == 0 and "a submit would add 8 new, 0 already there" in dry.stdout
    assert dry.stderr.strip().startswith("warning: sweep mixed would then hold jobs that differ in steps (300, 500)")
    out = run_cli("submit", str(grid), "base.steps=500", "--db", db)
    assert out.returncode == 0 and "8 added" in out.stdout and len(out.stderr.strip().splitlines()) == 1
    assert "now holds jobs that differ in steps (300, 500)" in out.stderr and "--sweep NEW_NAME" in out.stderr
    assert "Traceback" not in out.stderr


def test_more_seeds_and_a_longer_axis_are_still_one_grid(tmp_path):
    db = str(tmp_path / "jobs.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner.submit(GRID, db=db)
        more = runner.submit(GRID, db=db, overrides=["seed=2,3", "lr=0.1,0.2,0.4"])
        other_seed = runner.submit({**GRID, "grid": {"lr": [0.1]}, "base": {**GRID["base"], "seed": 9}}, db=db)
    assert more.added and more.outside == {} and other_seed.added == 1 and other_seed.outside == {}


def test_curves_and_learning_curves_draw_jobs_of_other_steps_apart(mixed):
    fig = plot_curves(mixed, "mixed", "test_loss", by="lr")
    labels = sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert labels == ["0.1, steps 300", "0.1, steps 500", "0.2, steps 300", "0.2, steps 500"]
    notes = " ".join(t.get_text() for t in fig.texts) + fig.axes[0].get_title()
    assert "which no grid of the sweep varies" in notes.replace("\n", " ")
    lines = fig.axes[0].get_lines()
    assert max(line.get_xdata().max() for line in lines) == 500 and min(line.get_xdata().max() for line in lines) == 300
    fig = plot_scaling(mixed, "mixed", x="width", by="lr")
    labels = sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert labels == ["0.1, steps 300", "0.1, steps 500", "0.2, steps 300", "0.2, steps 500"]
    fig = plot_curves(mixed, "mixed", "test_loss", by="steps")  # the key itself as the lines: nothing to split
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == ["300", "500"]


def test_a_heatmap_refuses_to_average_them_unless_the_key_is_an_axis(mixed):
    with pytest.raises(UserError, match=r"differ in steps, which no grid of it varies.*--x steps or --y steps"):
        plot_heatmap(mixed, "mixed", x="lr", y="width")
    plot_heatmap(mixed, "mixed", x="lr", y="steps")


def test_the_report_says_so_and_keeps_them_apart(mixed, tmp_path):
    report = write_report(mixed, "mixed", tmp_path / "report")
    text = report.summary.read_text()
    assert "**Not one grid**: jobs differ in steps (300, 500)" in text
    by_lr = text.split("### `lr`")[1].split("###")[0]
    assert "| lr | steps | jobs |" in by_lr.replace("  ", " ") or "| lr | steps |" in by_lr
    # the heatmap's keys are lr and steps here: nothing averaged across steps
    assert [p.name for p in report.figures if p.name.startswith("heatmap")] == ["heatmap_final_test_loss_lr_steps.png"]


def test_a_sweep_an_older_runner_submitted_reads_as_before(mixed):
    sql(mixed, "DELETE FROM sweeps")  # what `runner db upgrade` leaves for a sweep submitted before schema 4
    fig = plot_curves(mixed, "mixed", "test_loss", by="lr")
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == ["0.1", "0.2"]
    plot_heatmap(mixed, "mixed", x="lr", y="width")
