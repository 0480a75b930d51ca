"""Per-job logs (issue 19 item 3): what a job's code prints to stdout and stderr, its warnings and its
log records are stored with its attempt, bounded (the end kept, the dropped bytes counted);
`runner logs JOB [--attempt N]` prints them, `runner show` their tail. Real workers, real processes."""
from __future__ import annotations

import pytest

import runner
from runner.queue.store import Store

TALKING = dict(batchfn="plugins_for_tests:talking_teacher", model="mlp", d=3, width=4, batch_size=8, steps=10,
               n_test=0, max_attempts=1)


def _work(run_cli, db: str, *extra: str, env: dict[str, str] | None = None):
    return run_cli("workers", "--devices", "cpu", "--db", db, "--quiet", *extra, timeout=180, env=env)


def test_each_job_keeps_what_it_printed_warned_and_logged(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="talk", base=TALKING, grid=dict(seed=[0, 1], fail_at=[-1, 4])), db=db)
    out = _work(run_cli, db, "--fuse", "1")
    assert out.returncode == 1, out.stderr  # two of the four failed
    with Store(db) as store:
        by_id = {r["job_id"]: r for r in store.result_rows("talk")}
    for job_id, row in by_id.items():
        shown = run_cli("logs", str(job_id), "--db", db)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        head = text.splitlines()[0]
        assert head.startswith(f"# job {job_id}, attempt 1 of 1: {row['status']} on ")
        # print, stderr, the warning (once in every job, though one worker ran them all) and the record
        assert "talking_teacher line 0 (batch 8)" in text and "talking_teacher to stderr" in text
        assert text.count("UserWarning: talking_teacher warns once per job") == 1
        assert "WARNING talking_teacher: talking_teacher logs a record" in text
        if row["status"] == "failed":  # the log, then the error's traceback
            assert "# failed:" in text and text.rstrip().endswith("RuntimeError: talking_teacher fails at step 4")
        else:
            assert "# failed" not in text
    shown = run_cli("show", "1", "--db", db)
    assert shown.returncode == 0 and "log of attempt 1 (" in shown.stdout and "all of it: runner logs 1" in shown.stdout
    assert "  talking_teacher to stderr" in shown.stdout


def test_a_long_log_keeps_its_end_and_counts_what_was_dropped(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="long", base=dict(TALKING, say=2000)), db=db)
    assert _work(run_cli, db, env={"RUNNER_JOB_LOG_KB": "2"}).returncode == 0
    with Store(db) as store:
        (attempt,) = store.attempt_rows(1)
    kept = attempt["log"].encode()
    assert len(kept) <= 2048 and attempt["log_dropped"] > 2000 * 30
    assert "talking_teacher line 1999" in attempt["log"] and "talking_teacher line 0 " not in attempt["log"]
    shown = run_cli("logs", "1", "--db", db)
    assert f"the first {attempt['log_dropped']:,} bytes dropped" in shown.stdout.splitlines()[0]
    many = run_cli("show", "1", "--db", db).stdout
    assert "(last 10 of " in many  # show prints the tail only


def test_a_fused_group_shares_its_log_and_says_so(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="fused", base=TALKING, grid=dict(seed=[0, 1, 2])), db=db)
    assert _work(run_cli, db, "--fuse", "3").returncode == 0
    with Store(db) as store:
        logs = {job_id: store.attempt_rows(job_id)[0]["log"] for job_id in (1, 2, 3)}
        fused = [r["summary"].get("fused") for r in store.result_rows("fused")]
    assert fused == [3, 3, 3]
    assert len(set(logs.values())) == 1
    assert logs[1].startswith("# jobs 1, 2, 3 trained as one fused group: this is their output")
    assert logs[1].count("talking_teacher to stderr") >= 3  # each member's batch function spoke (set-up calls it more)


def test_a_job_past_its_timeout_keeps_what_it_printed_before_it_hung(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="stuck", base=dict(TALKING, hang_at=3, timeout=2)), db=db)
    assert _work(run_cli, db, "--fuse", "1").returncode == 1
    shown = run_cli("logs", "1", "--db", db)
    assert shown.returncode == 0
    assert "talking_teacher hangs at step 3" in shown.stdout and "# failed:" in shown.stdout
    assert "timed out after 2 s" in shown.stdout


def test_logs_of_a_job_without_one_and_bad_requests(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="later", base=TALKING), db=db)
    pending = run_cli("logs", "1", "--db", db)
    assert pending.returncode == 0 and pending.stdout.strip() == "job 1: no log (it has not run yet)"
    missing = run_cli("logs", "7", "--db", db)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: no job 7 in ")
    assert len(missing.stderr.strip().splitlines()) == 1
    assert _work(run_cli, db).returncode == 0
    wrong = run_cli("logs", "1", "--attempt", "2", "--db", db)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "error: job 1 has no attempt 2 (its attempts: 1): pick one with --attempt"
    assert run_cli("logs", "1", "--attempt", "1", "--db", db).stdout.startswith("# job 1, attempt 1 of 1: done")


@pytest.mark.parametrize("limit_kb", ["0"])
def test_a_zero_limit_keeps_nothing_but_the_count(tmp_path, run_cli, limit_kb):
    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="quiet", base=TALKING), db=db)
    assert _work(run_cli, db, env={"RUNNER_JOB_LOG_KB": limit_kb}).returncode == 0
    with Store(db) as store:
        (attempt,) = store.attempt_rows(1)
    assert attempt["log"] == "" and attempt["log_dropped"] > 0
