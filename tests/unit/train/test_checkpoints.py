"""Checkpoints: a stopped or crashed job resumes where it was and ends exactly as an uninterrupted one."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from support.jobs import StopAfter, same_results

from runner.hashing import config_hash
from runner.pool.checkpoint_dir import default_dir, job_path
from runner.train import checkpoints as checkpoint
from runner.train.loop import train

ONLINE = dict(batchfn="gaussian_teacher", model="mlp", d=10, k=4, width=24, depth=2, batch_size=32, n_test=128,
              steps=700, lr=0.02, optimizer="adam", seed=5, eval_every=50, thresholds=[0.5, 0.2, 0.1], ema=0.9,
              grabs=["weight_norm", "grad_norm", "plugins_for_tests:first_layer"], grab_every=100)
OFFLINE = dict(batchfn="plugins_for_tests:linear_teacher", model="mlp", d=6, width=16, depth=1, online=False,
               n_train=100, batch_size=16, n_test=64, steps=500, lr=0.05, momentum=0.9, seed=2, eval_every=40,
               grabs=["grad_norm"], grab_every=30)  # 6 minibatches per epoch: stops land mid-epoch


DRAWN_AHEAD = dict(ONLINE, draw_ahead=16, changes=[{"at": 300, "batch_size": 16}])  # 333: mid-block, new size


@pytest.mark.parametrize("cfg, stop_at", [(ONLINE, 333), (ONLINE, 256), (OFFLINE, 203), (OFFLINE, 1),
                                          (DRAWN_AHEAD, 333), (DRAWN_AHEAD, 90)],
                         ids=["online-mid-chunk", "online-chunk-edge", "offline-mid-epoch", "offline-first-step",
                              "draw-ahead-mid-block", "draw-ahead-before-a-change"])
def test_a_stopped_job_resumes_and_ends_as_if_never_stopped(tmp_path, cfg, stop_at):
    whole = train(cfg, device="cpu")
    path = tmp_path / "job.pt"
    first = train(cfg, device="cpu", should_stop=StopAfter(stop_at), checkpoint_path=path)
    assert first.status == "stopped" and first.summary["steps_run"] == stop_at
    assert path.exists() and torch.load(path, weights_only=True)["step"] == stop_at
    resumed = train(cfg, device="cpu", checkpoint_path=path)
    assert resumed.status == "done" and resumed.summary["resumed_from_step"] == stop_at
    assert "resumed_from_step" not in whole.summary
    same_results(whole, resumed)


def test_a_crashed_job_resumes_from_its_last_periodic_checkpoint(tmp_path):
    cfg = dict(ONLINE, checkpoint_every=100)
    whole = train(cfg, device="cpu")
    path = tmp_path / "job.pt"
    with pytest.raises(RuntimeError, match="crash after 450"):
        train(cfg, device="cpu", should_stop=StopAfter(450, RuntimeError), checkpoint_path=path)
    assert torch.load(path, weights_only=True)["step"] == 400  # the last multiple of checkpoint_every
    resumed = train(cfg, device="cpu", checkpoint_path=path)
    assert resumed.summary["resumed_from_step"] == 400
    same_results(whole, resumed)


def test_checkpoint_every_without_a_path_writes_nothing_and_changes_nothing(tmp_path):
    a = train(dict(ONLINE, steps=300), device="cpu")
    b = train(dict(ONLINE, steps=300, checkpoint_every=50), device="cpu")
    assert a.summary["final_test_loss"] == b.summary["final_test_loss"]
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_of_another_config_is_ignored(tmp_path, caplog):
    path = tmp_path / "job.pt"
    train(ONLINE, device="cpu", should_stop=StopAfter(100), checkpoint_path=path)
    other = dict(ONLINE, lr=0.03)
    out = train(other, device="cpu", checkpoint_path=path)
    assert "resumed_from_step" not in out.summary
    assert out.summary["final_test_loss"] == train(other, device="cpu").summary["final_test_loss"]
    assert "written for another job" in caplog.text


def test_a_corrupt_checkpoint_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "job.pt"
    path.write_bytes(b"PK\x03\x04 truncated by a full disk")
    out = train(dict(ONLINE, steps=100), device="cpu", checkpoint_path=path)
    assert out.status == "done" and "resumed_from_step" not in out.summary
    assert "cannot be read safely" in caplog.text


class _Planted:
    """Unpickling this runs code: a checkpoint must never be read with plain pickle."""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_in_a_checkpoint_file_is_refused_not_run(tmp_path, caplog):
    marker = tmp_path / "pwned"
    planted = _Planted()
    planted.marker = marker
    path = tmp_path / "job.pt"
    with open(path, "wb") as f:
        torch.save({"format": checkpoint.FORMAT, "config_hash": config_hash(ONLINE), "evil": planted}, f,
                   pickle_module=pickle)
    assert checkpoint.load(path, config_hash(ONLINE)) is None
    assert not marker.exists()
    assert "cannot be read safely" in caplog.text


def test_saving_is_atomic_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "job.pt"
    checkpoint.save(path, {"format": checkpoint.FORMAT, "step": 1, "w": torch.ones(3)})

    def torch_save_that_dies(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torch_save_that_dies)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"format": checkpoint.FORMAT, "step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["job.pt"]  # no temp file left behind


def test_a_symlink_planted_where_a_temporary_file_could_go_redirects_nothing(tmp_path):
    """Issue 16 item 6: the temporary name was predictable (host and pid) and opened with a plain open():
    a symlink planted there made the worker overwrite its target. Now: a random name, created exclusively,
    and the rename replaces a symlink at the checkpoint's own name instead of writing through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "ck"
    folder.mkdir()
    path = folder / "job.pt"
    import socket

    for name in (f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp", path.name):  # the old temp name, the file
        (folder / name).symlink_to(victim)
    checkpoint.save(path, {"format": checkpoint.FORMAT, "step": 3, "w": torch.ones(2)})
    assert victim.read_text() == "precious"
    assert not path.is_symlink() and torch.load(path, weights_only=True)["step"] == 3


def test_a_checkpoint_folder_runner_makes_is_private_to_its_user(tmp_path):
    from runner.pool.checkpoint_dir import usable_dir

    made = usable_dir(tmp_path / "new" / "checkpoints")
    assert made.stat().st_mode & 0o077 == 0  # no group or other access: nobody else can plant files
    checkpoint.save(tmp_path / "other" / "job.pt", {"format": checkpoint.FORMAT, "step": 1})
    assert (tmp_path / "other").stat().st_mode & 0o077 == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (made / f".runner-probe-{os.getpid()}").symlink_to(victim)  # the probe's old predictable name
    usable_dir(made)
    assert victim.read_text() == "precious"


def test_default_dir_sits_beside_a_sqlite_database(tmp_path):
    assert default_dir(str(tmp_path / "jobs.db")) == tmp_path / "jobs-checkpoints"
    assert default_dir(f"sqlite:///{tmp_path}/q.sqlite") == tmp_path / "q-checkpoints"
    assert job_path(tmp_path, 7, "ab" * 16).name == "job-7-abababababab.pt"


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [ONLINE, OFFLINE], ids=["online", "offline"])
def test_a_stopped_job_resumes_exactly_on_a_gpu(tmp_path, cfg):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    whole = train(cfg, device="cuda")
    path = tmp_path / "job.pt"
    assert train(cfg, device="cuda", should_stop=StopAfter(203), checkpoint_path=path).status == "stopped"
    resumed = train(cfg, device="cuda", checkpoint_path=path)
    assert resumed.summary["resumed_from_step"] == 203
    print(f"\ngpu resume ({cfg['batchfn']}): final test loss {whole.summary['final_test_loss']!r} "
          f"uninterrupted, {resumed.summary['final_test_loss']!r} resumed")
    assert resumed.summary["final_test_loss"] == pytest.approx(whole.summary["final_test_loss"], rel=1e-5)


# --- checkpoints bound to the queue's record of them (issue 16): a Seal ------------------------------
SMALL = dict(ONLINE, steps=300, grabs=[])
KEY = b"k" * 32


class Ledger:
    """The database's side of a seal, in memory: the digest recorded per file."""

    def __init__(self, path, key=None, job_id=7, attempt=1):
        self.path, self.key, self.job_id, self.attempt = path, key, job_id, attempt
        self.digests: dict = {}

    def seal(self) -> checkpoint.Seal:
        return checkpoint.Seal({self.path: (self.job_id, self.attempt)}, {self.path: self.digests.get(self.path)},
                               lambda written: self.digests.update(written), self.key)


def _stopped(tmp_path, key=None, stop_at=120):
    ledger = Ledger(tmp_path / "job.pt", key)
    first = train(SMALL, device="cpu", should_stop=StopAfter(stop_at), checkpoint_path=ledger.path, seal=ledger.seal())
    assert first.status == "stopped" and ledger.path in ledger.digests
    return ledger


def _forge(path):
    """What the issue's tester did: zeroed weights, a fake history, a late step, in a well-formed file."""
    state = torch.load(path, weights_only=True)
    state["model"] = {k: torch.zeros_like(v) for k, v in state["model"].items()}
    state["step"] = 299
    torch.save(state, path)


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_a_sealed_checkpoint_resumes_only_as_the_file_the_queue_recorded(tmp_path, key):
    whole = train(SMALL, device="cpu")
    ledger = _stopped(tmp_path, key)
    recorded = ledger.digests[ledger.path]
    assert recorded.startswith("hmac-sha256:" if key else "sha256:")
    assert torch.load(ledger.path, weights_only=True)["job"] == {"id": 7, "attempt": 1}
    resumed = train(SMALL, device="cpu", checkpoint_path=ledger.path, seal=ledger.seal())
    assert resumed.summary["resumed_from_step"] == 120
    same_results(whole, resumed)


REASONS = {"forged": "not the one the database recorded", "planted": "the database records no checkpoint",
           "another-job": "written for another job", "digest-rewritten-without-the-key": "not the one the database recorded"}


@pytest.mark.parametrize("tamper", list(REASONS))
def test_a_forged_or_planted_checkpoint_is_ignored_with_a_warning_and_the_job_starts_over(tmp_path, caplog, tamper):
    whole = train(SMALL, device="cpu")
    ledger = _stopped(tmp_path, key=KEY if tamper == "digest-rewritten-without-the-key" else None)
    if tamper == "forged":
        _forge(ledger.path)
    elif tamper == "planted":  # a file for a job whose worker never wrote one
        ledger.digests.clear()
    elif tamper == "another-job":  # a genuine file of job 7, recorded, handed to job 8
        ledger.job_id = 8
    else:  # the forger can write the database too, but without the key computes only a plain digest
        import hashlib

        _forge(ledger.path)
        ledger.digests[ledger.path] = "hmac-sha256:" + hashlib.sha256(ledger.path.read_bytes()).hexdigest()
    with caplog.at_level("WARNING", logger="runner.checkpoint"):
        result = train(SMALL, device="cpu", checkpoint_path=ledger.path, seal=ledger.seal())
    assert "resumed_from_step" not in result.summary and result.summary["steps_run"] == 300
    assert "ignoring checkpoint" in caplog.text and REASONS[tamper] in caplog.text
    same_results(whole, result)  # the genuine run's numbers, not the forged history


def test_a_fused_group_records_every_members_digest_in_one_write_and_resumes_sealed(tmp_path):
    from runner.train.fused import train_group

    configs = [dict(SMALL, seed=s) for s in range(3)]
    paths = [tmp_path / f"job-{i}.pt" for i in range(3)]
    writes: list[list] = []
    digests: dict = {}

    def seal():
        return checkpoint.Seal({p: (i, 1) for i, p in enumerate(paths)}, {p: digests.get(p) for p in paths},
                               lambda written: (writes.append(written), digests.update(written)), None)

    stopped = train_group(configs, device="cpu", should_stop=StopAfter(90), checkpoint_paths=paths, seal=seal())
    assert [r.status for r in stopped] == ["stopped"] * 3
    assert [len(w) for w in writes] == [3] and set(digests) == set(paths)  # one write for the three members
    _forge(paths[1])
    resumed = train_group(configs, device="cpu", checkpoint_paths=paths, seal=seal())
    assert [r.summary.get("resumed_from_step") for r in resumed] == [90, None, 90]  # the forged one started over
    for cfg, result in zip(configs, resumed):
        assert result.summary["final_test_loss"] == pytest.approx(train(cfg, device="cpu").summary["final_test_loss"],
                                                                  rel=1e-4)
