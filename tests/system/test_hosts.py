"""Several hosts on one PostgreSQL queue: two supervisors with distinct host ids (`--host-id`) share
the queue; one is killed with SIGKILL (its whole process group: supervisor and workers, as when a
node dies) mid-sweep, and the other finishes the jobs it orphaned once their lease has expired.
Every job ends done exactly once.

The quick variant runs in the default suite; the 200-job one is marked `slow` (run by
`bash scripts/test.sh` and CI). Both skip, with the reason shown, when no PostgreSQL server answers.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.databases import sql
from support.processes import cli_env

import runner
from runner.queue.store import Store

LEASE_S = 4.0  # how long an orphaned job waits before another host may take it


def _start(db: str, host: str, checkpoints: Path) -> subprocess.Popen:
    """`runner workers` of one host, in its own process group (killed as a whole, like a node)."""
    return subprocess.Popen([sys.executable, "-m", "runner.cli", "workers", "--devices", "cpu", "--per-device", "2",
                             "--db", db, "--host-id", host, "--lease", str(LEASE_S), "--checkpoint-dir",
                             str(checkpoints), "--quiet"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _checkpointed(folder: Path, job_id: int) -> bool:
    return any(folder.glob(f"job-{job_id}-*.pt"))


def _states(db: str) -> dict[str, int]:
    return dict(sql(db, "SELECT status, count(*) FROM jobs GROUP BY status"))


def run_two_hosts(db: str, tmp_path: Path, show, jobs: int, seed: int) -> dict:
    rng = random.Random(seed)
    steps = [rng.randrange(100, 300) for _ in range(jobs)]  # 0.2-0.6 s each at 2 ms a step
    runner.submit(dict(sweep="hosts", batchfn="plugins_for_tests:slow_teacher", model="mlp",
                       base=dict(d=4, batch_size=8, width=8, n_test=16, eval_every=100, delay=0.002, max_attempts=5,
                                 checkpoint_every=50),
                       zip=[dict(seed=list(range(jobs)), steps=steps)]), db=db)
    checkpoints = tmp_path / "shared-checkpoints"  # one folder for both "hosts", as on a shared file system
    t0 = time.monotonic()
    a, b = _start(db, "node-a", checkpoints), _start(db, "node-b", checkpoints)
    orphaned: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and a.poll() is None:  # mid-sweep, node-a in a job it checkpointed
            held = sql(db, "SELECT id FROM jobs WHERE status = 'running' AND host = 'node-a'")
            if any(_checkpointed(checkpoints, job) for job, in held) and _states(db).get("done", 0) >= jobs // 4:
                # Freeze node-a, then look again: the job seen may have finished since the first look.
                os.killpg(a.pid, signal.SIGSTOP)
                held = sql(db, "SELECT id FROM jobs WHERE status = 'running' AND host = 'node-a'")
                if not any(_checkpointed(checkpoints, job) for job, in held):
                    os.killpg(a.pid, signal.SIGCONT)
                    continue
                os.killpg(a.pid, signal.SIGKILL)
                killed_at = time.time()
                a.wait(timeout=30)
                orphaned = [job for job, in held]  # what node-a held when it died
                checkpointed = [job for job in orphaned if _checkpointed(checkpoints, job)]
                break
            time.sleep(0.05)
        assert orphaned, "node-a held no job when it was killed"
        _, err = b.communicate(timeout=600)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    wall = time.monotonic() - t0
    df = runner.results(db, sweep="hosts")
    with Store(db) as store:
        history = {int(j): store.attempt_rows(int(j)) for j in df.job_id}
        workers = store.worker_rows()
    killed = [w for w in workers if w["host"] == "node-a" and w["exited_at"] is None]  # died without a word
    done_attempts = [a for h in history.values() for a in h if a["outcome"] == "done"]
    expired = [a for h in history.values() for a in h if a["outcome"] == "expired"]
    recovered = [max(a["ended_at"] for a in history[j] if a["outcome"] == "done") for j in orphaned]
    figures = {
        "jobs": jobs, "hosts": 2, "kills": f"node-a (supervisor + {len(killed)} workers, one SIGKILL to the group)",
        "orphaned": len(orphaned), "orphans_resumed_from_node_a_checkpoint": f"{len(checkpointed)}/{len(orphaned)}",
        "reruns": int(df.attempts.sum()) - jobs,
        "lost": int((df.status != "done").sum()),
        "duplicated": sql(db, "SELECT count(*) - count(DISTINCT job_id) FROM results")[0][0]
        + sql(db, "SELECT count(*) - count(DISTINCT job_id) FROM attempts WHERE outcome = 'done'")[0][0],
        "done_by_node_a": int((df.host == "node-a").sum()), "done_by_node_b": int((df.host == "node-b").sum()),
        "orphans_done_s_after_kill": round(max(recovered) - killed_at, 1), "lease_s": LEASE_S,
        "wall_s": round(wall, 1), "exit_b": b.returncode,
    }
    show("\ntwo hosts on PostgreSQL, one killed: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert b.returncode == 0, err[-2000:]
    assert a.returncode == -signal.SIGKILL
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert len(df) == jobs and df.seed.nunique() == jobs and (df.steps_run == df.steps).all()
    assert len(done_attempts) == jobs  # one done attempt per job: nothing ran to the end twice
    assert {a["host"] for a in expired} == {"node-a"} and len(expired) == figures["reruns"]
    for job in orphaned:  # node-a's attempt expired, node-b's finished the job
        outcomes = [(a["host"], a["outcome"]) for a in history[job]]
        assert outcomes[-2:] == [("node-a", "expired"), ("node-b", "done")], outcomes
    assert figures["orphans_done_s_after_kill"] >= LEASE_S * 0.9  # taken over only after the lease ran out
    resumed = df.set_index("job_id")["resumed_from_step"]
    assert checkpointed and all(resumed[job] >= 50 for job in checkpointed)  # node-b went on from node-a's file
    assert list(checkpoints.glob("job-*.pt")) == []  # finished jobs leave no checkpoint behind
    assert {w["host"] for w in workers} == {"node-a", "node-b"}
    assert all(w["worker"].startswith(f"{w['host']}/") for w in workers)
    return figures


@pytest.mark.postgres
def test_two_hosts_one_killed_quick(pg_url, tmp_path, show):
    run_two_hosts(pg_url, tmp_path, show, jobs=40, seed=1)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_hosts_one_killed_full(pg_url, tmp_path, show):
    run_two_hosts(pg_url, tmp_path, show, jobs=200, seed=2)


def test_host_id_must_be_a_name(run_cli, tmp_path):
    for bad in ("", "a/b"):
        out = run_cli("workers", "--devices", "cpu", "--host-id", bad, "--db", str(tmp_path / "jobs.db"))
        assert out.returncode == 2 and "--host-id" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_slurm_example_runs_runner_workers_once_per_node(tmp_path):
    """examples/slurm/workers.sbatch with stand-ins for srun (two "nodes") and runner, on a SQLite file."""
    from support.processes import EXAMPLES

    db = str(tmp_path / "jobs.db")
    runner.submit(dict(sweep="slurm", batchfn="gaussian_teacher", model="mlp",
                       base=dict(d=4, batch_size=8, width=8, steps=20, n_test=16, eval_every=10),
                       grid=dict(seed=list(range(6)))), db=db)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\n# two "nodes": drop srun\'s options, run the task twice\n'
                                  'while [[ $1 == --* ]]; do shift; done\n"$@" & "$@" & wait\n')
    (bin_dir / "runner").write_text(f'#!/bin/bash\nexec {sys.executable} -m runner.cli "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = cli_env({"RUNNER_DB": db, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PER_DEVICE": "1",
                   "SLURM_GPUS_PER_NODE": "0", "SLURM_CPUS_PER_TASK": "1", "SLURM_SUBMIT_DIR": str(tmp_path)})
    done = subprocess.run(["bash", str(EXAMPLES / "slurm" / "workers.sbatch")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    df = runner.results(db, sweep="slurm")
    assert (df.status == "done").all() and len(df) == 6 and (df.attempts == 1).all()
    with Store(db) as store:
        supervisors = {w["worker"].split("/")[1] for w in store.worker_rows()}
    assert len(supervisors) == 2  # one `runner workers` per node
    missing = subprocess.run(["bash", str(EXAMPLES / "slurm" / "workers.sbatch")], cwd=tmp_path,
                             env={k: v for k, v in env.items() if k != "RUNNER_DB"}, capture_output=True, text=True,
                             check=False)
    assert missing.returncode != 0 and "export RUNNER_DB=" in missing.stderr
