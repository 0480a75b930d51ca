"""Checkpoint faults never fail a job: a write that fails is a warning recorded on the job and
training goes on; a folder that cannot be used is refused when `runner workers` starts."""
from __future__ import annotations

import shutil
import signal
import threading
import time

from support.databases import sql
from support.jobs import SLOW
from support.processes import start_workers, wait_for

import runner
from runner.train.loop import train


def test_a_checkpoint_folder_that_is_a_file_is_refused_at_start(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="s", base=dict(SLOW, steps=5, delay=0.0)), db=db)
    (tmp_path / "ckpt").write_text("not a folder")
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--checkpoint-dir", str(tmp_path / "ckpt"))
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "cannot be used" in lines[0] and "--checkpoint-dir" in lines[0]
    assert sql(db, "SELECT status, attempts FROM jobs") == [("pending", 0)]  # no worker started


def test_deleting_the_checkpoint_folder_mid_run_fails_no_job(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="s", base=dict(SLOW, steps=400, delay=0.001, checkpoint_every=10),
                       grid=dict(seed=list(range(8)))), db=db)
    folder, stop = tmp_path / "jobs-checkpoints", threading.Event()

    def vandal() -> None:
        while not stop.wait(0.01):
            shutil.rmtree(folder, ignore_errors=True)

    proc = start_workers(db, "--per-device", "2", "--fuse", "1")
    thread = threading.Thread(target=vandal, daemon=True)
    try:
        # once the pool is past its start checks (which rightly refuse a folder that vanishes under them)
        wait_for(lambda: sql(db, "SELECT count(*) FROM jobs WHERE status != 'pending'")[0][0] > 0, timeout=90)
        thread.start()
        _, err = proc.communicate(timeout=240)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        proc.kill()
    assert proc.returncode == 0, err
    assert sql(db, "SELECT status, count(*), max(attempts) FROM jobs GROUP BY status") == [("done", 8, 1)]


def test_a_stop_with_an_unusable_checkpoint_folder_releases_the_job_without_an_attempt(tmp_path):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="s", base=dict(SLOW, steps=3000, delay=0.002)), db=db)
    folder = tmp_path / "jobs-checkpoints"
    proc = start_workers(db, "--fuse", "1")
    try:
        wait_for(lambda: sql(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == [(1,)], timeout=90)
        time.sleep(0.5)
        shutil.rmtree(folder, ignore_errors=True)
        folder.write_text("a file where the folder was")  # the stop's checkpoint cannot be written
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "not written" in err
    assert sql(db, "SELECT status, attempts FROM jobs") == [("pending", 0)]  # released, no attempt used


def test_a_failed_periodic_write_is_recorded_on_the_job_and_training_goes_on(tmp_path):
    (tmp_path / "file").write_text("")
    cfg = dict(SLOW, steps=50, delay=0.0, checkpoint_every=20)
    result = train(cfg, device="cpu", checkpoint_path=tmp_path / "file" / "job.pt")  # its folder is a file
    assert result.status == "done" and result.summary["steps_run"] == 50
    assert "checkpoint at step 40 not written" in result.summary["checkpoint_error"]
    assert result.summary["final_test_loss"] == train(cfg, device="cpu").summary["final_test_loss"]
