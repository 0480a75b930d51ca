"""The sweep report: summary.md tables and numbers for a sweep with known outcomes, results.csv round
trip, figures chosen from the grid (and skipped with a note when they do not fit), the CLI command,
and one report of real tiny jobs run on CPU."""
from __future__ import annotations

import statistics
import struct

import click
import pandas as pd
import pytest
from click.testing import CliRunner
from support.markdown import row, section
from support.sweeps import LRS, OTHER, SEEDS, SWEEP, WIDTHS, final_test, finished, make_db, step_at

import runner
from runner.cli.plots import report as report_command
from runner.errors import UserError
from runner.queue.store import Store
from runner.results.plots import plot_curves, plot_heatmap, plot_scaling
from runner.results.report import write_report

FIGURES = ["curves_train_loss_by_lr.png", "curves_train_loss_by_width.png", "curves_test_loss_by_lr.png",
           "curves_test_loss_by_width.png", "heatmap_final_test_loss_lr_width.png", "scaling_final_test_loss_width.png"]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_db(tmp_path_factory.mktemp("report") / "jobs.db")


@pytest.fixture(scope="module")
def written(db, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "toy-report"
    return write_report(db, SWEEP, out), (out / "summary.md").read_text()


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def test_files_and_figures_are_written(written):
    report, text = written
    folder = report.summary.parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(["summary.md", "results.csv", *FIGURES])
    assert [p.name for p in report.figures] == FIGURES and report.skipped == []
    for name in FIGURES:
        data = (folder / name).read_bytes()
        width, height = struct.unpack(">II", data[16:24])
        assert data[:4] == b"\x89PNG" and 600 <= width <= 2400 and 400 <= height <= 1600
        assert f"]({name})" in text  # a relative link GitHub renders next to summary.md


def test_what_ran_counts_wall_time_and_devices(written):
    text = section(written[1], "## What ran")
    assert row(text, "done")[1] == "9" and row(text, "diverged")[1] == "2" and row(text, "failed")[1] == "1"
    assert row(text, "**total**")[1] == "**12**"
    assert "`lr` (3 values: 0.01, 0.1, 1) × `width` (2 values: 16, 64) × `seed` (2 values: 0, 1)" in text
    assert "6 configurations × 2 seeds" in text
    walls = [1.0 + s for lr in LRS for w in WIDTHS for s in SEEDS if (lr, w, s) != (1.0, 16, 1)]  # not the failed
    assert f"Wall time: {sum(walls):.1f} s in all, {statistics.mean(walls):.1f} s mean per job (11 jobs" in text
    assert "Devices: cpu (" in text and "`model=mlp`" in text and "`thresholds=[0.1]`" in text


def test_failures_list_each_job_with_its_error_line(written):
    text = section(written[1], "## Failures")
    assert "3 of 12 jobs failed or diverged" in text
    failed = row(text, "12")
    assert failed[1:] == ["failed", "1", "16", "1", "ValueError: boom"]
    assert row(text, "10")[-1] == "non-finite train loss at step 11"


def test_per_axis_tables_hold_mean_and_std_over_the_other_keys(written):
    text = section(written[1], "## Results by axis")
    lr_table = section(text, "### `lr`")
    assert lr_table.strip().splitlines()[0] == "| lr | jobs | done | final_train_loss | final_test_loss | step_at_0.1 |"
    for lr in LRS:
        tests = [final_test(lr, w, s) for w in WIDTHS for s in SEEDS if finished(lr, w, s)]
        cells = row(lr_table, f"{lr:g}")
        assert cells[1:3] == ["4", str(len(tests))]
        assert cells[4] == (mean_std(tests) if len(tests) > 1 else f"{tests[0]:.4g}")
        assert cells[3] == (mean_std([t / 2 for t in tests]) if len(tests) > 1 else f"{tests[0] / 2:.4g}")
    crossed = [step_at(0.1, w, s) for w in WIDTHS for s in SEEDS]
    hits = [c for c in crossed if c is not None]
    assert row(lr_table, "0.1")[5] == f"{statistics.mean(hits):.0f} ± {statistics.stdev(hits):.0f} ({len(hits)}/4)"
    width_table = section(text, "### `width`")
    tests = [final_test(lr, 64, s) for lr in LRS for s in SEEDS if finished(lr, 64, s)]
    assert row(width_table, "64")[4] == mean_std(tests)
    assert "### `seed`" not in text  # seeds are averaged over, not an axis


def test_best_configurations_rank_means_over_seeds(written):
    text = section(written[1], "## Best configurations")
    assert "top 5 of 5" in text  # (lr=1, width=64) has no finished job
    expected = sorted(((statistics.mean([final_test(lr, w, s) for s in SEEDS if finished(lr, w, s)]), lr, w)
                       for lr in LRS for w in WIDTHS if any(finished(lr, w, s) for s in SEEDS)))
    for rank, (value, lr, width) in enumerate(expected, 1):
        cells = row(text, str(rank))
        assert cells[1:3] == [f"{lr:g}", str(width)]
        assert cells[3].split(" ± ")[0] == f"{value:.4g}"


def test_results_csv_round_trips(db, written):
    report, _ = written
    back = pd.read_csv(report.results)
    df = runner.results(db, sweep=SWEEP)
    assert list(back.columns) == list(df.columns) and len(back) == len(df) == 12
    for column in ("job_id", "lr", "width", "seed", "final_test_loss", "final_train_loss", "wall_s", "step_at_0.1"):
        pd.testing.assert_series_equal(back[column].astype(float), pd.to_numeric(df[column]).astype(float),
                                       check_names=False)
    assert (back.status == df.status).all() and (back.thresholds == "[0.1]").all()


def test_figures_that_do_not_fit_are_skipped_with_a_note(db, tmp_path):
    report = write_report(db, OTHER, tmp_path / "other")
    assert report.figures == [] and len(report.skipped) == 3
    text = report.summary.read_text()
    assert "2 jobs have not finished yet" in text and "No job has a result yet." in text
    assert "heatmap: it needs two varying keys, and only `lr` varies" in text
    assert "curves: no metric was recorded at more than one step" in text
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["results.csv", "summary.md"]


def test_report_folder_errors(db, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="it is a file"):
        write_report(db, SWEEP, tmp_path / "file")
    with pytest.raises(UserError, match="does not exist"):
        write_report(db, SWEEP, tmp_path / "a" / "b")
    with pytest.raises(UserError, match="no sweep 'nope'"):
        write_report(db, "nope", tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing made on a mistake


def test_report_command(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    group = click.Group("runner", commands=[report_command])
    result = CliRunner().invoke(group, ["report", "--db", db, "--sweep", SWEEP])
    assert result.exit_code == 0, result.output
    assert "wrote toy-report/summary.md, results.csv and 6 figures" in result.stdout
    assert (tmp_path / "toy-report" / "summary.md").exists()
    again = CliRunner().invoke(group, ["report", "--db", db, "--sweep", OTHER, "-o", "o"])
    assert again.exit_code == 0 and again.stdout.count("skipped ") == 3


@pytest.fixture
def store_opens(monkeypatch) -> list[str]:
    """The database of every Store opened from now on, in order."""
    opens, init = [], Store.__init__

    def counted(self, db, *args, **kwargs):
        opens.append(db)
        init(self, db, *args, **kwargs)
    monkeypatch.setattr(Store, "__init__", counted)
    return opens


@pytest.mark.parametrize("what", ["report", "curves", "heatmap", "scaling", "runner report", "runner plot curves"])
def test_a_report_or_a_figure_opens_the_database_once(db, tmp_path, monkeypatch, store_opens, what):
    """One sweep read for a whole report (its tables, results.csv and six figures) or one figure:
    before the Sweep object, a report opened the database 20 times and a curves plot 3."""
    monkeypatch.chdir(tmp_path)
    draw = {"report": lambda: write_report(db, SWEEP, tmp_path / "r"),
            "curves": lambda: plot_curves(db, SWEEP, "train_loss", "lr", tmp_path / "c.png"),
            "heatmap": lambda: plot_heatmap(db, SWEEP, "final_test_loss", "lr", "width", tmp_path / "h.png"),
            "scaling": lambda: plot_scaling(db, SWEEP, "final_test_loss", "width", "lr", tmp_path / "s.png")}
    if what in draw:
        draw[what]()
    else:
        from runner.cli import main
        result = CliRunner().invoke(main, [*what.split()[1:], "--db", db, "--sweep", SWEEP])
        assert result.exit_code == 0, result.output
    assert store_opens == [db]
