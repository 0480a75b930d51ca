"""Smoke tests of the benchmark scripts: each runs its quick CPU variant and prints its table.
No timing assertion: the figures that count come from the full runs on a quiet machine."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.databases import PG_SERVER, need_postgres, pg_connection
from support.processes import ROOT, cli_env


def run_benchmark(show, script: str, *args: str, timeout: int = 120) -> str:
    """Run benchmarks/<script> with args (its quick CPU variant), show what it printed, and return its
    stdout once it exited 0."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=False, cwd=ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=timeout)
    show(f"\n$ python benchmarks/{script} {' '.join(args)}\n{done.stdout}{done.stderr}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_queue_benchmark_quick_runs_and_prints_its_table(show):
    out = run_benchmark(show, "queue.py", "--quick")
    assert out.startswith("queue benchmark ") and "SQLAlchemy" in out and "SQLite" in out and "git " in out
    lines = out.splitlines()
    assert any(line.split()[:9] == ["jobs", "seconds", "jobs/s", "vs", "W=1", "claim", "p50", "ms", "claim"]
               for line in lines)
    for label in ("add 2,000 ", "drain W=1 ", "drain W=2 "):
        assert any(line.startswith(label) for line in lines), label
    assert out.count("exactly once: OK") == 2


def test_trainloop_benchmark_quick_runs_and_prints_its_table(show):
    out = run_benchmark(show, "trainloop.py", "--quick", timeout=300)
    rows = [line.split() for line in out.splitlines() if line[:6].strip().isdigit()]
    variants = ["plain PyTorch", "runner eager, bare", "runner eager, all on", "runner, bare", "runner, all on"]
    assert [(r[0], " ".join(r[2:-5])) for r in rows] == [(w, v) for w in ("32", "64") for v in variants]
    plain, eager_all_on, all_on = rows[0], rows[2], rows[4]
    assert plain[-1] == eager_all_on[-1] == all_on[-1]  # the same work: equal loss at the check step


@pytest.mark.postgres
def test_queue_benchmark_quick_on_postgresql_prints_both_backends(show):
    need_postgres()
    out = run_benchmark(show, "queue.py", "--quick", "--db", PG_SERVER, timeout=240)
    assert out.startswith("queue benchmark ") and "PostgreSQL 1" in out and "psycopg " in out
    lines = out.splitlines()
    assert "PostgreSQL/SQLite" in out and lines.count("no-op jobs/s, the same drain rows on both backends:") == 1
    table = lines[lines.index("no-op jobs/s, the same drain rows on both backends:") + 3:][:2]
    assert [row.split()[0] for row in table] == ["1", "2"]
    assert out.count("exactly once: OK") == 4  # two drain rows on each backend
    with pg_connection() as con:  # the benchmark's schemas are gone
        assert con.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'runner_bench_%'").fetchone() == (0,)


def test_results_read_benchmark_quick_runs_and_prints_its_table(show):
    out = run_benchmark(show, "results_read.py", "--quick")
    lines = out.splitlines()
    assert lines[0].startswith("results-read benchmark ") and "SQLite" in lines[0]
    assert lines[-6].split() == ["call", "jobs", "rows", "seconds", "cpu", "s", "target", "met?"]
    labels = [line[:30].strip() for line in lines[-4:]]
    assert labels == ["results()", "curves(test_loss), 400 jobs", "curves(test_loss), all jobs",
                      "grid_array(lr x width x seed)"]
    assert lines[-4].split()[1:3] == ["400", "400"]  # results(): 400 jobs, 400 rows


def test_fused_benchmark_quick_runs_and_prints_its_table(show):
    out = run_benchmark(show, "fused.py", "--quick", timeout=300)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["fused", "benchmark", "cpu"]
    alone, *fused = [line.split() for line in lines[2:]]
    assert alone[:3] == ["tiny", "alone", "2"] and alone[-1] == "1.0x"
    assert [r[:4] for r in fused] == [["tiny", "fused", "K=4", "4"], ["tiny", "fused", "K=16", "16"]]
    assert all(float(r[-1]) < 1e-4 for r in fused)  # each member's final loss is the job's alone


def test_fused_agreement_quick_prints_a_row_per_learning_rate(show):
    out = run_benchmark(show, "fused.py", "--agreement", "--quick", timeout=300)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["fused", "agreement", "cpu"]
    rows = [line.split() for line in lines[2:]]
    assert [r[:2] for r in rows] == [["0.08", "3"], ["0.02", "3"]]
    assert all(float(r[5]) < 1e-4 for r in rows)  # tiny and stable: fused ends where alone does


def test_export_tensorboard_benchmark_quick_runs_and_prints_its_table(show):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install -e '.[dev]'")
    out = run_benchmark(show, "export_tensorboard.py", "--quick")
    lines = out.splitlines()
    assert lines[0].startswith("export-tensorboard benchmark ") and "tensorboard " in lines[0]
    assert ["what", "jobs", "seconds", "runs/s", "MB", "written", "x", "read"] in [line.split() for line in lines]
    labels = ["read: results() + curves()", "export_tensorboard(), disk", "export_tensorboard(), tmpfs",
              "runner export tensorboard, disk"]
    if not os.path.isdir("/dev/shm"):  # the tmpfs row needs one
        labels.remove("export_tensorboard(), tmpfs")
    rows = lines[-len(labels):]
    assert [line[:len(label)] for line, label in zip(rows, labels)] == labels
    cells = [line[len(label):].split() for line, label in zip(rows, labels)]
    assert [c[0] for c in cells] == ["300"] * len(labels) and cells[0][-1] == "1.00"  # ratios to the read row
    assert len({c[3] for c in cells[1:]}) == 1 and cells[1][3] != "-"  # the same MB written by every export row
