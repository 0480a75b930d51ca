"""Faults inside jobs (raising plug-ins, out of memory, NaN) and a worker that lost its lease."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from support.jobs import SLOW
from support.processes import cli_env, start_workers, wait_for, worker_pids

import runner
from runner.queue.store import Store

TINY = dict(model="mlp", d=4, batch_size=8, width=8, n_test=16, steps=30)


def _attempts(db: str, job_id: int) -> list[dict]:
    store = Store(db)
    try:
        return store.attempt_rows(job_id)
    finally:
        store.close()


def test_faulty_jobs_fail_with_their_reason_and_a_fresh_worker_takes_the_next_job(tmp_path):
    db = str(tmp_path / "jobs.db")
    faults = {
        "grab raises": dict(TINY, batchfn="gaussian_teacher", grabs=["plugins_for_tests:failing_grab"], grab_every=10),
        "out of memory": dict(TINY, batchfn="plugins_for_tests:oom_batchfn", fail_at=5),
        "batchfn raises": dict(TINY, batchfn="plugins_for_tests:exploding_batchfn", fail_at=3),
        "nan loss": dict(TINY, batchfn="gaussian_teacher", lr=1e5, steps=300),
    }
    for i, (name, cfg) in enumerate(faults.items()):
        runner.submit(dict(sweep=f"fault{i}", base=dict(cfg, max_attempts=2, priority=10)), db=db)
    runner.submit(dict(sweep="healthy", base=dict(TINY, batchfn="gaussian_teacher")), db=db)
    proc = start_workers(db)  # one worker slot: every job, healthy last (lowest priority)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err  # jobs ended failed
    assert err.splitlines()[-1] == "runner workers: 1 done, 1 diverged, 3 failed (exit 1)"
    df = runner.results(db).set_index("sweep")
    expect = {"fault0": ("failed", 2, "ValueError: grab failed on purpose"),
              "fault1": ("failed", 2, "OutOfMemoryError: CUDA out of memory"),
              "fault2": ("failed", 2, "RuntimeError: boom at step 3"),
              "fault3": ("diverged", 1, "non-finite train loss at step")}
    for sweep, (status, attempts, reason) in expect.items():
        row = df.loc[sweep]
        assert (row.status, row.attempts) == (status, attempts), sweep
        assert reason in row.error, (sweep, row.error)  # results() shows the error's last line
        if status == "failed":  # the database keeps the whole traceback of every attempt
            assert all("Traceback (most recent call last)" in a["error"] for a in _attempts(db, int(row.job_id)))
    assert df.loc["healthy"].status == "done"
    failed = [a for j in df.job_id for a in _attempts(db, int(j)) if a["outcome"] == "failed"]
    assert len(failed) == 6 and len({a["worker"] for a in failed}) == 6  # a fresh process after every failure
    assert err.count("failed:") == 6  # each failed attempt logged with its one-line reason


def test_runner_retry_requeues_failed_jobs_with_fresh_attempts(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="oom", base=dict(TINY, batchfn="plugins_for_tests:oom_batchfn", max_attempts=1)), db=db)
    start_workers(db).communicate(timeout=120)
    assert runner.results(db, sweep="oom").status.tolist() == ["failed"]
    out = run_cli("retry", "--db", db, "--sweep", "oom")
    assert out.returncode == 0
    start_workers(db).communicate(timeout=120)
    df = runner.results(db, sweep="oom")
    assert df.status.tolist() == ["failed"] and df.attempts.tolist() == [1]  # a fresh budget of attempts, used again
    assert [a["outcome"] for a in _attempts(db, int(df.job_id[0]))] == ["failed", "failed"]


def test_a_worker_paused_past_its_lease_cannot_overwrite_the_job_taken_over(tmp_path, show):
    """SIGSTOP a worker mid-job until its lease expires; another pool finishes the job; SIGCONT:
    the paused worker's heartbeat and write-back are refused (logged), the results stay the new owner's."""
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="fence", base=dict(SLOW, steps=1500, delay=0.002, checkpoint_every=100, seed=3)), db=db)
    first = start_workers(db, "--lease", "3")
    try:
        wait_for(lambda: list((tmp_path / "jobs-checkpoints").glob("*.pt")), timeout=90)  # mid-job
        (paused,) = worker_pids(first.pid)
        os.kill(paused, signal.SIGSTOP)
        stopped_at = time.monotonic()
        second = start_workers(db, "--lease", "3")  # claims the job once the 3 s lease has expired
        _, err2 = second.communicate(timeout=180)
        assert second.returncode == 0, err2
        paused_s = time.monotonic() - stopped_at
        df = runner.results(db, sweep="fence")
        assert df.status.tolist() == ["done"] and df.attempts.tolist() == [2]
        owner_summary = df.iloc[0].to_dict()
        os.kill(paused, signal.SIGCONT)
        _, err1 = first.communicate(timeout=60)
    finally:
        for proc in (first,):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert first.returncode == 0, err1
    assert "refused" in err1 and "stale" in err1
    show(f"\nfencing: worker paused {paused_s:.1f}s (lease 3s); on SIGCONT it logged:\n"
          + "\n".join(line for line in err1.splitlines() if "refused" in line))
    after = runner.results(db, sweep="fence").iloc[0].to_dict()
    assert after == owner_summary  # nothing of the paused worker's reached the results
    history = _attempts(db, int(df.job_id[0]))
    assert [a["outcome"] for a in history] == ["expired", "done"]
    assert history[0]["worker"] != history[1]["worker"]
    store = Store(db)
    assert len(store.metric_rows(int(df.job_id[0]))) == len(set((m["step"], m["name"]) for m in store.metric_rows(int(df.job_id[0]))))
    store.close()
    whole = runner.train(dict(SLOW, steps=1500, delay=0.0, checkpoint_every=100, seed=3), device="cpu")
    assert after["final_test_loss"] == pytest.approx(whole.summary["final_test_loss"], rel=1e-4)


@pytest.mark.gpu
def test_a_real_cuda_out_of_memory_fails_the_job_and_a_fresh_worker_goes_on(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    db = str(tmp_path / "jobs.db")
    total = torch.cuda.get_device_properties(0).total_memory
    # A batch whose activations cannot fit: inputs alone take a third of the card, the hidden layer more.
    huge = int(total / 3 / (4 * 256))
    runner.submit(dict(sweep="oom", batchfn="gaussian_teacher", model="mlp",
                       base=dict(d=256, width=4096, batch_size=huge, n_test=64, steps=5, max_attempts=1, priority=1)), db=db)
    runner.submit(dict(sweep="after", batchfn="gaussian_teacher", model="mlp", base=dict(d=64, batch_size=256, steps=500)), db=db)
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "workers", "--devices", "0", "--db", db, "--quiet"],
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    print(proc.stderr)
    assert proc.returncode == 1  # a job ended failed
    assert proc.stderr.splitlines()[-1] == "runner workers: 1 done, 1 failed (exit 1)"
    df = runner.results(db).set_index("sweep")
    print(df[["status", "attempts", "device", "wall_s"]].to_string())
    print("oom error, last line:", df.loc["oom"].error.strip().splitlines()[-1])
    print("next job's peak memory (MiB):", df.loc["after"].max_memory_mib)
    assert df.loc["oom"].status == "failed" and "OutOfMemoryError" in df.loc["oom"].error
    assert df.loc["after"].status == "done"
    assert df.loc["after"].max_memory_mib < 1024  # the failed job's memory was given back
    assert "GPU memory after clean-up" in proc.stderr
