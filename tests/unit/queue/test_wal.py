"""SQLite's write-ahead log: workers' commits leave checkpoints to the supervisor.

SQLite copies the WAL back into the database file inside whichever commit crosses 1000 pages,
which made that commit (a claim, say) the slowest of all (the queue benchmark's p99). Workers
open their store with autocheckpoint=False and the supervisor calls checkpoint_wal() as it polls.
"""
from __future__ import annotations

import sqlite3

from runner.hashing import config_hash
from runner.queue.store import Store


def _add(store: Store, n: int, offset: int) -> None:
    jobs = [(config_hash({"seed": i}), {"seed": i, "pad": "x" * 2000}) for i in range(offset, offset + n)]
    store.add_jobs("wal", jobs)


def test_a_worker_store_leaves_the_wal_to_checkpoint_wal(tmp_path):
    path = str(tmp_path / "jobs.db")
    Store(path, create=True).close()
    worker = Store(path, autocheckpoint=False)
    keeper = sqlite3.connect(path)  # a reader keeps the WAL from being reset when the last writer closes
    keeper.execute("SELECT COUNT(*) FROM jobs").fetchone()
    try:
        with worker._engine.connect() as con:
            assert con.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        for k in range(6):  # ~6 x 400 x 2 KB: far past the 1000-page automatic threshold
            _add(worker, 400, k * 400)
        size_before = (tmp_path / "jobs.db").stat().st_size
        worker.checkpoint_wal()
        size_after = (tmp_path / "jobs.db").stat().st_size
        assert size_after > size_before + 1_000_000, (size_before, size_after)  # the pages reached the file
        assert Store(path).counts()["wal"]["pending"] == 2400
    finally:
        keeper.close()
        worker.close()


def test_a_default_store_checkpoints_by_itself(tmp_path):
    path = str(tmp_path / "jobs.db")
    store = Store(path, create=True)
    try:
        with store._engine.connect() as con:
            assert con.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        for k in range(6):
            _add(store, 400, k * 400)
        assert (tmp_path / "jobs.db").stat().st_size > 4_000_000  # copied back inside the commits
    finally:
        store.close()
