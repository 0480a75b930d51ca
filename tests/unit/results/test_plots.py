"""Figures of a sweep with known outcomes: the plotted data equals the expected means, PNGs are sane,
and user mistakes end in one-line errors (Python API and the click commands)."""
from __future__ import annotations

import click
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.colors import LogNorm
from support.figures import assert_sane_png
from support.sweeps import (
    LRS,
    OTHER,
    SEEDS,
    SWEEP,
    TEST_STEPS,
    TRAIN_STEPS,
    WIDTHS,
    final_test,
    finished,
    heldout_loss,
    make_db,
    mean,
    status_of,
    train_loss,
)

from runner.cli.plots import plot, report
from runner.errors import UserError
from runner.results.plots import plot_curves, plot_heatmap, plot_scaling


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_db(tmp_path_factory.mktemp("plots") / "jobs.db")


def data_lines(ax) -> dict[str, object]:
    """The labelled lines of an axes (error-bar caps and other helpers have labels starting with _)."""
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def band_range(collection) -> tuple[float, float]:
    ys = np.concatenate([p.vertices[:, 1] for p in collection.get_paths()])
    return float(ys.min()), float(ys.max())


def test_curves_mean_over_other_keys_with_min_max_band(db, tmp_path):
    out = tmp_path / "curves.png"
    fig = plot_curves(db, SWEEP, "train_loss", "lr", out)
    assert_sane_png(out)
    ax = fig.axes[0]
    lines = data_lines(ax)
    assert list(lines) == ["0.01", "0.1", "1"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # steps 10..1000; a loss
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "train_loss"
    assert ax.get_legend().get_title().get_text() == "lr"
    assert "width (2 values), seed (2 values)" in ax.get_title() and "step 0 not shown" in ax.get_title()
    assert fig.get_suptitle() == "toy: train_loss by lr"
    for lr, band in zip(LRS, ax.collections):
        steps = [s for s in TRAIN_STEPS if s > 0]
        expected, every = [], []
        for step in steps:  # jobs that reached the step: done ones everywhere, diverged ones early on
            values = [train_loss(lr, w, s, step) for w in WIDTHS for s in SEEDS
                      if finished(lr, w, s) or (status_of(lr, w, s).value == "diverged" and step <= 10)]
            expected.append(mean(values))
            every += values
        line = lines[f"{lr:g}"]
        np.testing.assert_allclose(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
        np.testing.assert_allclose(band_range(band), (min(every), max(every)), rtol=1e-12)


def test_curves_std_band_linear_steps_and_another_key(db):
    fig = plot_curves(db, SWEEP, "test_loss", "width", band="std")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "log"
    lines = data_lines(ax)
    assert list(lines) == ["16", "64"]
    for width, band in zip(WIDTHS, ax.collections):
        per_step = [[heldout_loss(lr, width, s, step) for lr in LRS for s in SEEDS if finished(lr, width, s)]
                    for step in TEST_STEPS]
        means = [np.mean(v) for v in per_step]
        stds = [np.std(v, ddof=1) for v in per_step]
        np.testing.assert_allclose(lines[str(width)].get_xdata(), TEST_STEPS)
        np.testing.assert_allclose(lines[str(width)].get_ydata(), means, rtol=1e-12)
        low, high = band_range(band)
        assert low == pytest.approx(min(m - s for m, s in zip(means, stds)))
        assert high == pytest.approx(max(m + s for m, s in zip(means, stds)))
    assert "lr (3 values), seed (2 values)" in ax.get_title() and "+- 1 std" in ax.get_title()


def test_heatmap_cells_are_means_over_seeds_missing_cell_grey(db, tmp_path):
    out = tmp_path / "heatmap.png"
    fig = plot_heatmap(db, SWEEP, "final_test_loss", "lr", "width", out)
    assert_sane_png(out)
    ax = fig.axes[0]
    image = ax.images[0]
    cells = image.get_array()
    assert cells.shape == (len(WIDTHS), len(LRS))
    for i, width in enumerate(WIDTHS):
        for j, lr in enumerate(LRS):
            values = [final_test(lr, width, s) for s in SEEDS if finished(lr, width, s)]
            if values:
                assert not cells.mask[i, j] and cells[i, j] == pytest.approx(mean(values), rel=1e-12)
            else:
                assert cells.mask[i, j], (lr, width)
    assert isinstance(image.norm, LogNorm)  # 0.01 .. 0.6: decades
    bad = image.cmap.get_bad()
    assert bad[0] == bad[1] == bad[2] and bad[3] == 1.0  # missing cells drawn opaque grey
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1", "1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["16", "64"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lr", "width")
    texts = [t.get_text() for t in ax.texts]
    assert "n/a" in texts and "1*" in texts  # the empty cell; the cell that lost one job
    assert f"{final_test(0.01, 16, 0) * 1.5:.3g}" in texts
    assert len(fig.axes) == 2 and "final_test_loss" in fig.axes[1].get_ylabel()  # the colorbar


def test_heatmap_linear_colours_when_values_stay_within_a_decade(db):
    fig = plot_heatmap(db, SWEEP, "step_at_0.1", "lr", "seed")
    assert not isinstance(fig.axes[0].images[0].norm, LogNorm)


def test_scaling_log_log_one_line_per_value_of_by(db, tmp_path):
    out = tmp_path / "scaling.png"
    fig = plot_scaling(db, SWEEP, "final_test_loss", "width", "lr", out)
    assert_sane_png(out)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = data_lines(ax)
    assert list(lines) == ["0.01", "0.1", "1"]
    for lr in LRS:
        widths = [w for w in WIDTHS if any(finished(lr, w, s) for s in SEEDS)]
        expected = [mean([final_test(lr, w, s) for s in SEEDS if finished(lr, w, s)]) for w in widths]
        np.testing.assert_allclose(lines[f"{lr:g}"].get_xdata(), widths)
        np.testing.assert_allclose(lines[f"{lr:g}"].get_ydata(), expected, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "64"]
    assert "3 of 12 jobs without a value left out" in ax.get_title()


def test_scaling_without_by_is_one_mean_line(db):
    fig = plot_scaling(db, SWEEP, "final_train_loss", "lr", None)
    lines = data_lines(fig.axes[0])
    assert list(lines) == ["mean"]
    expected = [mean([final_test(lr, w, s) / 2 for w in WIDTHS for s in SEEDS if finished(lr, w, s)]) for lr in LRS]
    np.testing.assert_allclose(lines["mean"].get_ydata(), expected, rtol=1e-12)


ERRORS = {
    "unknown sweep": (lambda db, tmp: plot_curves(db, "nope"), "no sweep 'nope'"),
    "two sweeps, none named": (lambda db, tmp: plot_heatmap(db, None), "holds 2 sweeps: name one with --sweep"),
    "unknown key": (lambda db, tmp: plot_curves(db, SWEEP, by="wdith"), "no config key 'wdith'"),
    "key with one value": (lambda db, tmp: plot_heatmap(db, SWEEP, x="model"), "'model' has one value (mlp)"),
    "same key twice": (lambda db, tmp: plot_heatmap(db, SWEEP, x="lr", y="lr"), "pick two different keys"),
    "unknown metric": (lambda db, tmp: plot_curves(db, SWEEP, metric="tset_loss"), "'tset_loss'"),
    "unknown value": (lambda db, tmp: plot_scaling(db, SWEEP, value="final_loss", x="width", by="lr"),
                      "no summary column 'final_loss'"),
    "no finished job": (lambda db, tmp: plot_scaling(db, OTHER, x="lr", by=None), "no finite value"),
    "missing folder": (lambda db, tmp: plot_curves(db, SWEEP, out=tmp / "no" / "c.png"), "does not exist"),
    "bad suffix": (lambda db, tmp: plot_curves(db, SWEEP, out=tmp / "c.jpeg"), "must end in .png"),
    "bad band": (lambda db, tmp: plot_curves(db, SWEEP, band="iqr"), "unknown band 'iqr'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_user_mistakes_are_user_errors_naming_cause_and_fix(db, tmp_path, case):
    call, words = ERRORS[case]
    with pytest.raises(UserError) as info:
        call(db, tmp_path)
    message = str(info.value)
    assert words in message and "\n" not in message


def cli() -> click.Group:
    """A stand-in for runner's main group with the plot commands registered."""
    group = click.Group("runner")
    group.add_command(plot)
    group.add_command(report)
    return group


def test_plot_commands_write_default_names_and_read_runner_db(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    cases = [(["plot", "curves", "--db", db, "--sweep", SWEEP, "--by", "width"], "curves_train_loss_by_width.png"),
             (["plot", "heatmap", "--db", db, "--sweep", SWEEP], "heatmap_final_test_loss_lr_width.png"),
             (["plot", "scaling", "--db", db, "--sweep", SWEEP, "--x", "width", "--by", "lr", "-o", "s.png"], "s.png")]
    for args, name in cases:
        result = runner.invoke(cli(), args)
        assert result.exit_code == 0, result.output
        assert f"wrote {name}" in result.stdout
        assert_sane_png(tmp_path / name)
    result = runner.invoke(cli(), ["plot", "heatmap", "--sweep", SWEEP, "-o", "env.png"], env={"RUNNER_DB": db})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.png").exists()


@pytest.mark.parametrize("args, words", [
    (["plot", "curves", "--sweep", "nope"], "no sweep 'nope'"),
    (["plot", "heatmap", "--sweep", SWEEP, "--y", "seeds"], "no config key 'seeds'"),
    (["plot", "scaling", "--sweep", SWEEP, "--x", "width", "--by", "model"], "'model' has one value"),
    (["plot", "curves", "--sweep", SWEEP, "-o", "missing/c.png"], "folder 'missing' does not exist"),
    (["report", "--sweep", SWEEP, "-o", "missing/report"], "folder 'missing' does not exist"),
])
def test_plot_command_mistakes_print_one_line_and_exit_2(db, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli(), [*args, "--db", db])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
