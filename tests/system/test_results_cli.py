"""The read side through the real command: a figure written by `runner plot`, a report of jobs real
workers ran, and `runner status --watch` redrawing until Ctrl-C."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading

import pytest
from support import grid_db
from support.figures import assert_sane_png
from support.markdown import row, section
from support.processes import EXAMPLES, cli_env
from support.sweeps import SWEEP, make_db

import runner
from runner.results.report import write_report


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The toy sweep of support.sweeps."""
    return make_db(tmp_path_factory.mktemp("plots") / "jobs.db")


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """support.grid_db's sweep with one job left running."""
    return {"running": grid_db.build(tmp_path_factory.mktemp("results") / "running.db", running=True)}


def test_through_the_real_cli_once_wired(db, run_cli, tmp_path):
    from runner.cli import main

    if "plot" not in main.commands:
        pytest.skip("runner.cli does not register the plot commands yet")
    out = run_cli("plot", "heatmap", "--db", db, "--sweep", SWEEP, "-o", "h.png")
    assert out.returncode == 0, out.stderr
    assert_sane_png(tmp_path / "h.png")
    bad = run_cli("plot", "curves", "--db", db, "--sweep", SWEEP, "--by", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no config key 'nope'" in bad.stderr


def test_report_of_real_tiny_jobs(run_cli, tmp_path):
    shutil.copy(EXAMPLES / "quickstart.yaml", tmp_path)
    tiny = ["base.steps=40", "base.n_test=64", "base.eval_every=10", "base.grab_every=40", "lr=0.01,0.03",
            "width=16,32", "seed=0"]
    assert run_cli("submit", "quickstart.yaml", *tiny).returncode == 0
    work = run_cli("workers", "--devices", "cpu", "--quiet")
    assert work.returncode == 0, work.stderr
    drawn = run_cli("plot", "curves")  # online jobs record train_loss once: the default is the busiest metric
    assert drawn.returncode == 0 and drawn.stdout.strip() == "wrote curves_test_loss_by_lr.png", drawn.stderr
    assert_sane_png(tmp_path / "curves_test_loss_by_lr.png")
    report = write_report(str(tmp_path / "jobs.db"), "quickstart", tmp_path / "report")
    text = report.summary.read_text()
    assert "| done | 4 |" in text and "None." in section(text, "## Failures")
    names = {p.name for p in report.figures}
    assert {"curves_test_loss_by_lr.png", "heatmap_final_test_loss_lr_width.png",
            "scaling_final_test_loss_width.png"} <= names, report.skipped
    df = runner.results(str(tmp_path / "jobs.db"), "quickstart")
    best = df.loc[df.final_test_loss.idxmin()]
    assert row(section(text, "## Best configurations"), "1")[1:3] == [f"{best.lr:g}", str(best.width)]


def test_status_watch_redraws_until_ctrl_c_then_exits_0(dbs):
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", "status", "--watch", "--interval", "0.2",
                             "--db", dbs["running"]], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    killer = threading.Timer(60, proc.kill)  # a hung watch fails the test instead of hanging it
    killer.start()
    try:
        frames, lines = 0, []
        while frames < 3:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
            frames += line.startswith("runner status  ")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        killer.cancel()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
    text = "".join(lines)
    assert text.count("workers: 1 live:") >= 2 and text.count("ValueError: boom") >= 2
    assert all(line.split()[1:] == ["0", "1", "5", "1", "0", "0", "7"]
               for line in text.splitlines() if line.startswith(grid_db.SWEEP + " "))
