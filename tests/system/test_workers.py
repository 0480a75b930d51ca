"""Worker processes under real signals: a killed child, a graceful stop, failing jobs. These run each
job alone (`--fuse 1`) where they count running jobs; test_fused_workers does the same for groups."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from support.bytecode import bytecode_env
from support.jobs import SLOW
from support.processes import cli_env, start_workers, wait_for, worker_pids

import runner
from runner.queue.store import Store


def _running(db: str) -> int:
    store = Store(db)
    try:
        return sum(c["running"] for c in store.counts().values())
    finally:
        store.close()


def test_a_worker_killed_mid_job_is_replaced_and_its_job_rerun(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="kill", base=dict(SLOW, steps=600, delay=0.003), grid=dict(seed=[0, 1, 2, 3])), db=db)
    proc = start_workers(db, "--per-device", "2", "--fuse", "1")
    try:
        wait_for(lambda: _running(db) == 2, timeout=90)
        time.sleep(0.5)
        victim = worker_pids(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "died (signal 9)" in err
    df = runner.results(db, sweep="kill")
    assert (df.status == "done").all() and len(df) == 4
    assert sorted(df.attempts) == [1, 1, 1, 2]
    store = Store(db)
    rerun = int(df.job_id[df.attempts == 2].iloc[0])
    history = store.attempt_rows(rerun)
    store.close()
    assert len(history) == 2 and "died" in (history[0]["error"] or history[0]["outcome"])


@pytest.mark.parametrize("how", ["sigterm-to-supervisor", "ctrl-c-to-process-group"])
def test_a_stop_signal_releases_running_jobs_without_using_an_attempt(tmp_path, how, show):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="stop", base=dict(SLOW, steps=1500, delay=0.002, checkpoint_every=50), grid=dict(seed=[0, 1, 2])), db=db)
    proc = start_workers(db, "--per-device", "2", "--fuse", "1")
    try:
        # both jobs past their first periodic checkpoint, so the resume has steps to skip
        wait_for(lambda: len(list((tmp_path / "jobs-checkpoints").glob("job-*.pt"))) == 2, timeout=90)
        t0 = time.monotonic()
        if how == "sigterm-to-supervisor":
            proc.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C reaches every process of the foreground group
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        stop_s = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert stop_s < 20
    df = runner.results(db, sweep="stop")
    assert (df.status == "pending").all() and (df.attempts == 0).all()
    saved = sorted((tmp_path / "jobs-checkpoints").glob("job-*.pt"))
    assert len(saved) == 2  # each stopped job left a checkpoint
    again = start_workers(db, "--per-device", "2", "--fuse", "1")
    again.communicate(timeout=240)
    assert again.returncode == 0
    df = runner.results(db, sweep="stop")
    assert (df.status == "done").all()
    resumed = df[df.resumed_from_step.notna()]
    assert len(resumed) == 2 and (resumed.resumed_from_step >= 50).all()  # not from step 0
    for _, row in resumed.iterrows():  # the same numbers as one uninterrupted run (delay changes no value)
        whole = runner.train(dict(SLOW, steps=1500, delay=0.0, checkpoint_every=50, seed=int(row.seed)), device="cpu")
        assert row.final_test_loss == pytest.approx(whole.summary["final_test_loss"], rel=1e-4)
    show(f"\n{how}: resumed from steps {sorted(resumed.resumed_from_step.astype(int))} of 1500; final test losses equal")
    assert list((tmp_path / "jobs-checkpoints").glob("job-*.pt")) == []  # finished jobs clean up


def test_failing_jobs_retry_then_fail_with_traceback_and_retry_requeues(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    base = dict(batchfn="plugins_for_tests:exploding_batchfn", model="mlp", d=4, batch_size=8, steps=10, n_test=0, max_attempts=2)
    runner.submit(dict(sweep="boom", base=base), db=db)
    runner.submit(dict(sweep="fine", base=dict(SLOW, steps=20, delay=0.0)), db=db)
    proc = start_workers(db)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1  # a job ended failed: scripts and Slurm see it
    assert err.splitlines()[-1] == "runner workers: 1 done, 1 failed (exit 1)"
    df = runner.results(db)
    boom = df[df.sweep == "boom"].iloc[0]
    assert boom.status == "failed" and boom.attempts == 2
    assert "boom at step 3" in boom.error
    assert (df[df.sweep == "fine"].status == "done").all()  # the worker went on
    out = run_cli("retry", "--db", db, "--sweep", "boom")
    assert out.returncode == 0 and "1 jobs back" in out.stdout
    assert runner.results(db, sweep="boom").status.tolist() == ["pending"]


def test_a_diverging_job_ends_diverged(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="nan", batchfn="gaussian_teacher", model="mlp",
                       base=dict(d=8, batch_size=32, steps=300, lr=1e4, n_test=32)), db=db)
    proc = start_workers(db)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0  # diverged is a result, not a failure
    assert err.splitlines()[-1] == "runner workers: 1 diverged (exit 0)"
    df = runner.results(db, sweep="nan")
    assert df.status.tolist() == ["diverged"] and df.attempts.tolist() == [1]
    assert "non-finite" in df.error[0]


@pytest.mark.gpu
def test_workers_are_pinned_one_per_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="gpu", batchfn="gaussian_teacher", model="mlp",
                       base=dict(d=64, batch_size=256, steps=3000, width=512), grid=dict(seed=list(range(8)))), db=db)
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "workers", "--devices", "0,1", "--db", db],
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    print(proc.stderr)
    assert proc.returncode == 0
    df = runner.results(db, sweep="gpu")
    print(df[["job_id", "seed", "status", "device", "gpu", "wall_s"]].to_string())
    assert (df.status == "done").all()
    assert set(df.device) == {"cuda:0", "cuda:1"}


def test_a_new_pool_takes_over_the_jobs_of_a_pool_killed_without_cleanup(tmp_path, show):
    """The supervisor and its workers all die by SIGKILL; their running jobs wait out the lease."""
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="orphans", base=dict(SLOW, steps=3000, delay=0.002), grid=dict(seed=[0, 1, 2, 3])), db=db)
    first = start_workers(db, "--per-device", "2", "--lease", "4", "--fuse", "1")
    try:
        wait_for(lambda: _running(db) == 2, timeout=90)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no cleanup at all: nothing is released
        first.communicate(timeout=30)
    killed_at = time.monotonic()
    assert _running(db) == 2
    second = start_workers(db, "--per-device", "2", "--lease", "4", "--fuse", "1")
    _, err = second.communicate(timeout=240)
    assert second.returncode == 0, err
    df = runner.results(db, sweep="orphans")
    show(f"\norphans: 2 running jobs reclaimed after the 4 s lease; sweep finished "
          f"{time.monotonic() - killed_at:.1f}s after the kill; attempts {sorted(df.attempts)}")
    assert (df.status == "done").all()
    assert sorted(df.attempts) == [1, 1, 2, 2]  # the two orphaned jobs ran again, once each
    store = Store(db)
    outcomes = [a["outcome"] for j in df.job_id[df.attempts == 2] for a in store.attempt_rows(int(j))]
    store.close()
    assert outcomes.count("expired") == 2


def test_the_supervisor_never_imports_torch(tmp_path):
    """Importing torch costs the supervisor seconds at start and exit, and it never trains."""
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="light", base=dict(SLOW, steps=5)), db=db)
    script = tmp_path / "pool.py"
    script.write_text("import sys\nif __name__ == '__main__':\n    from runner.pool.supervisor import run_workers\n"
                      "    from runner.pool.devices import parse_devices\n"
                      f"    code = run_workers({db!r}, parse_devices('cpu'), show_progress=False)\n"
                      "    print(code, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, str(script)], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert runner.results(db, sweep="light").status.tolist() == ["done"]


def test_workers_print_the_hint_once_at_start(tmp_path):
    """Through the real command: one tiny job, torch read from an empty bytecode prefix."""
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="hint", base=dict(SLOW, steps=2, delay=0.0), grid=dict(seed=[0, 1])), db=db)
    workers = [sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--db", db, "--quiet"]
    env = bytecode_env(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(tmp_path / "empty-prefix"))
    done = subprocess.run(workers, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "torch has no compiled bytecode" in line]
    assert len(lines) == 1 and "PYTHONDONTWRITEBYTECODE is set" in lines[0], done.stderr
    runner.submit(dict(sweep="hint-again", base=dict(SLOW, steps=3, delay=0.0)), db=db)
    quiet = subprocess.run(workers, env=bytecode_env(), capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "compiled bytecode" not in quiet.stderr, quiet.stderr


def test_the_tally_counts_only_this_pools_jobs_and_an_empty_queue_says_so(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="one", base=dict(SLOW, steps=5, delay=0.0), grid=dict(seed=[0, 1])), db=db)
    first = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert first.returncode == 0 and first.stderr.splitlines()[-1] == "runner workers: 2 done (exit 0)"
    runner.submit(dict(sweep="two", base=dict(SLOW, steps=5, delay=0.0)), db=db)
    again = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")  # the earlier pool's jobs are not counted
    assert again.returncode == 0 and again.stderr.splitlines()[-1] == "runner workers: 1 done (exit 0)"
    idle = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")  # nothing left: no worker is started
    assert idle.returncode == 0 and "nothing pending or running in" in idle.stderr.splitlines()[-1]
    unknown = run_cli("workers", "--devices", "cpu", "--db", db, "--sweep", "nope")
    assert unknown.returncode == 2 and "no sweep 'nope'" in unknown.stderr
