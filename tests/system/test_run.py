"""Small sweeps without start-up waits (issue 17): `runner run` (submit, work the sweep here, print
it), `runner.run` from Python, and a warm `runner workers --wait` pool that a submit reaches within
half a second, with `runner.submit(..., wait=True)` blocking until the sweep is done."""
from __future__ import annotations

import signal
import time

import pytest
from support.databases import sql
from support.processes import start_workers, wait_for

import runner

GRID = dict(sweep="quick", batchfn="gaussian_teacher", model="mlp",
            base=dict(d=4, k=2, batch_size=8, width=8, depth=1, steps=30, n_test=16, eval_every=10),
            grid=dict(lr=[0.05, 0.1], seed=[0, 1]))


def test_runner_run_submits_works_the_sweep_here_and_prints_its_results(run_cli, tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "sweep: quick\nbatchfn: gaussian_teacher\nmodel: mlp\n"
        "base: {d: 4, k: 2, batch_size: 8, width: 8, depth: 1, steps: 30, n_test: 16}\ngrid: {lr: [0.05, 0.1]}\n")
    out = run_cli("run", "grid.yaml", "seed=0,1", "--devices", "cpu", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "sweep quick: 4 jobs, 4 added" in out.stderr
    table = out.stdout.splitlines()
    assert table[0].startswith("same in every job:") and "lr" in table[1] and "final_test_loss" in table[1]
    assert len(table) == 2 + 4 and all(" done " in line for line in table[2:])
    again = run_cli("run", "grid.yaml", "seed=0,1", "--devices", "cpu", "--quiet")  # nothing left to do: the table
    assert again.returncode == 0 and "0 added" in again.stderr and len(again.stdout.splitlines()) == 6


def test_runner_run_exits_1_when_a_job_failed_and_2_for_a_users_mistake(run_cli, tmp_path):
    (tmp_path / "grid.yaml").write_text(
        "sweep: bad\nbatchfn: plugins_for_tests:exploding_batchfn\nmodel: mlp\n"
        "base: {d: 4, batch_size: 8, width: 8, steps: 10, max_attempts: 1}\n")
    failed = run_cli("run", "grid.yaml", "--devices", "cpu", "--quiet")
    assert failed.returncode == 1 and " failed " in failed.stdout, failed.stderr
    mistake = run_cli("run", "grid.yaml", "widht=3", "--devices", "cpu")
    assert mistake.returncode == 2 and "unknown key 'widht'" in mistake.stderr
    assert len(mistake.stderr.strip().splitlines()) == 1


def test_runner_run_from_python_returns_the_results(tmp_path):
    df = runner.run(GRID, db=str(tmp_path / "jobs.db"), devices="cpu", quiet=True)
    assert len(df) == 4 and (df.status == "done").all() and df.final_test_loss.notna().all()


def test_a_warm_pool_takes_a_submit_within_half_a_second_and_submit_can_wait_for_the_results(tmp_path, show):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(GRID, sweep="first", grid=dict(seed=[0])), db=db)
    pool = start_workers(db, "--wait")
    try:
        wait_for(lambda: sql(db, "SELECT status FROM jobs") == [("done",)], timeout=120)
        time.sleep(3)  # idle long enough for the polls to back off to their longest interval
        latencies = []
        for round_ in range(3):
            before = time.time()
            df = runner.submit(dict(GRID, sweep=f"warm{round_}"), db=db, wait=True, progress=False, timeout=120)
            assert len(df) == 4 and (df.status == "done").all()
            (first_start,), = sql(db, f"SELECT min(a.started_at) FROM attempts a JOIN jobs j ON j.id = a.job_id "
                                      f"WHERE j.sweep = 'warm{round_}'")
            latencies.append(first_start - before)
            time.sleep(2)
    finally:
        pool.send_signal(signal.SIGTERM)
        _, err = pool.communicate(timeout=60)
    assert pool.returncode == 0, err
    show(f"\nwarm pool: submit to first claim {', '.join(f'{s:.2f}' for s in latencies)} s (submit included)")
    assert max(latencies) < 1.5  # the poll's longest interval is 0.4 s; the rest is the submit itself on 2 busy cores


def test_a_submit_that_waits_past_its_timeout_says_so_and_leaves_the_jobs(tmp_path):
    db = str(tmp_path / "jobs.db")
    with pytest.raises(TimeoutError, match="4 jobs pending and 0 running after 0.5 s"):
        runner.submit(GRID, db=db, wait=True, progress=False, timeout=0.5)
    assert sql(db, "SELECT count(*) FROM jobs WHERE status = 'pending'") == [(4,)]
