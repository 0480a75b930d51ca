"""A SQLite queue stays on one machine (issue 19 item 6): a database file on a network filesystem is
refused when opened, and `runner workers` refuses a SQLite queue that another machine's live workers
use; each with the fix (a local disk, or a PostgreSQL URL)."""
from __future__ import annotations

import re
import sqlite3

import pytest

import runner
from runner.errors import UserError
from runner.queue.store import Store, one_machine
from runner.queue.store.one_machine import filesystem_of, machine_id, network_filesystem

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export/home /home nfs4 rw,vers=4.2 0 0
/dev/vdb /home/alice/local\\040disk ext4 rw 0 0
lustre@tcp:/scratch /scratch lustre rw 0 0
//nas/share /mnt/nas cifs rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


@pytest.mark.parametrize("path,kind", [
    ("/home/alice/study", "nfs4"),
    ("/home/alice/local disk/study", "ext4"),  # a local disk mounted inside the NFS home (escaped space)
    ("/home", "nfs4"),
    ("/homework", "ext4"),                     # a prefix of the name is not a mount point
    ("/scratch/run1", "lustre"),
    ("/mnt/nas/x", "cifs"),
    ("/tmp", "tmpfs"),
    ("/", "ext4"),
])
def test_the_filesystem_of_a_path_is_its_longest_mount_point(path, kind):
    assert filesystem_of(path, MOUNTS) == kind


def test_a_later_mount_over_the_same_point_wins():
    assert filesystem_of("/data/x", "/dev/a /data ext4 rw 0 0\nsrv:/d /data nfs rw 0 0\n") == "nfs"


def _fake_mounts(monkeypatch, tmp_path, kind: str) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/x {tmp_path} {kind} rw 0 0\n")
    monkeypatch.setattr(one_machine, "MOUNTS", str(mounts))


def test_a_database_on_a_network_filesystem_is_refused_with_the_fix(monkeypatch, tmp_path):
    _fake_mounts(monkeypatch, tmp_path, "nfs4")
    db = tmp_path / "jobs.db"
    assert network_filesystem(str(db)) == "nfs4"
    with pytest.raises(UserError, match=r"network filesystem \(nfs4\).*local disk.*PostgreSQL URL"):
        Store(str(db), create=True)
    assert not db.exists()  # nothing half-written


def test_a_local_database_opens(monkeypatch, tmp_path):
    _fake_mounts(monkeypatch, tmp_path, "xfs")
    Store(str(tmp_path / "jobs.db"), create=True).close()
    monkeypatch.setattr(one_machine, "MOUNTS", str(tmp_path / "no-such-file"))  # no /proc: nothing to say
    assert network_filesystem(str(tmp_path / "jobs.db")) is None


def test_machines_are_told_apart_by_their_kernel():
    assert machine_id() == machine_id() and machine_id().startswith(("boot:", "host:"))


def _grid(db: str) -> None:
    runner.submit(dict(sweep="s", base=dict(batchfn="gaussian_teacher", model="mlp", d=3, width=4, batch_size=8,
                                            steps=3, n_test=0)), db=db)


def test_workers_refuse_a_sqlite_queue_another_machine_works(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    _grid(db)
    with Store(db) as store:
        store.register_worker("far/1/cuda:0/0.1", host="far", pid=1, device="cuda:0", machine="boot:another-kernel")
        store.register_worker("here/1/cpu/0.1", host="here", pid=1, device="cpu")  # this machine: fine
    out = run_cli("workers", "--devices", "cpu", "--db", db, "--quiet")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    # (seen "0 s ago" or more: a loaded machine starts the command slowly)
    assert re.search(r"has live workers on another machine \(1, e\.g\. far/1/cuda:0/0\.1, seen \d+ s ago\)", out.stderr)
    assert "PostgreSQL URL" in out.stderr
    with Store(db) as store:
        assert store.counts("s")["s"]["pending"] == 1  # nothing claimed

    # a worker that stopped beating long ago (its machine crashed) no longer counts
    con = sqlite3.connect(db)
    con.execute("UPDATE workers SET seen_at = seen_at - 3600 WHERE machine = 'boot:another-kernel'")
    con.commit()
    con.close()
    assert run_cli("workers", "--devices", "cpu", "--db", db, "--quiet").returncode == 0


def test_another_host_id_on_this_machine_is_one_machine(tmp_path, run_cli):
    db = str(tmp_path / "jobs.db")
    _grid(db)
    with Store(db) as store:
        store.register_worker("other-id/1/cpu/0.1", host="other-id", pid=1, device="cpu")
    assert run_cli("workers", "--devices", "cpu", "--host-id", "mine", "--db", db, "--quiet").returncode == 0
