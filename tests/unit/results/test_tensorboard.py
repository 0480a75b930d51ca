"""runner.results.tensorboard: a sweep written as TensorBoard runs, read back with tensorboard's own
EventAccumulator and compared with what the database holds (support.tensorboard_runs' mixed sweep)."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboard", reason="tensorboard is not installed: pip install -e '.[dev]' (scripts/test.sh does)")

from support import tensorboard_runs as mixed
from support.tensorboard_runs import as_float32, read_run, same

import runner
from runner.errors import NoSuchSweep, UserError
from runner.results import tensorboard as tb_export
from runner.results import tfevents
from runner.results.tensorboard import MARKER, export_tensorboard
from runner.results.tfevents import masked_crc32c


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return mixed.make_db(tmp_path_factory.mktemp("tb") / "jobs.db")


@pytest.fixture(scope="module")
def exported(db: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tb_export.Exported]:
    out = tmp_path_factory.mktemp("export") / "runs"
    return out, export_tensorboard(db, out, mixed.SWEEP)


def finished(db: str):
    df = runner.results(db, mixed.SWEEP)
    return df[df.status.isin(["done", "diverged", "failed"])]


def test_one_run_per_finished_job_named_by_its_id_and_the_unfinished_counted(db, exported):
    out, done = exported
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"job-{i:06d}" for i in range(1, 8)]
    assert done.runs == 7 and done.skipped == {"running": 1, "pending": 1} and done.sweep == mixed.SWEEP
    assert done.bytes == sum(p.stat().st_size for p in out.rglob("events.out.tfevents.*"))
    marker = json.loads((out / MARKER).read_text())
    assert marker["sweep"] == mixed.SWEEP and marker["runs"] == 7


def test_every_curve_point_reads_back_as_a_scalar_at_its_step(db, exported):
    out, _ = exported
    points = runner.curves(db, mixed.SWEEP)
    for job_id in finished(db).job_id:
        run = read_run(out / f"job-{job_id:06d}")
        curves = {t: v for t, v in run.scalars.items() if not t.startswith("summary/")}
        mine = points[points.job_id == job_id]
        assert set(curves) == set(mine.metric)
        for metric, rows in mine.groupby("metric"):
            expected = [(int(s), as_float32(v)) for s, v in zip(rows.step, rows.value)]
            got = curves[metric]
            assert [s for s, _ in got] == [s for s, _ in expected], (job_id, metric)
            assert all(same(a, b) for (_, a), (_, b) in zip(got, expected)), (job_id, metric, got, expected)
    assert read_run(out / "job-000006").scalars["train_loss"][-1] == (300, float("inf"))  # 1e39: beyond float32


def test_each_run_holds_its_swept_config_as_hparams_and_its_summary_as_metrics(db, exported):
    out, _ = exported
    summary = ["final_train_loss", "final_test_loss", "steps_run", "wall_s", "diverged_at", "final_weight_norm",
               "step_at_0.1"]  # the numeric summary columns (not device, host, cuda_visible_devices...)
    for row in finished(db).to_dict("records"):
        run = read_run(out / f"job-{row['job_id']:06d}")
        assert run.hparams == {"lr": row["lr"], "act": row["act"], "bn": row["bn"],
                               "widths": json.dumps(row["widths"], separators=(",", ":"))}
        wanted = {f"summary/{k}": [as_float32(row[k])] for k in summary if row[k] == row[k] and row[k] is not None}
        got = {t: points for t, points in run.scalars.items() if t.startswith("summary/")}
        assert {t: [v for _, v in p] for t, p in got.items()} == wanted, row["job_id"]
        at = row["steps_run"] if row["steps_run"] == row["steps_run"] else 0
        assert all(p[0][0] == at for p in got.values())  # at the job's last step
        assert run.status == ("STATUS_SUCCESS" if row["status"] == "done" else "STATUS_FAILURE")


def test_the_experiment_lists_the_swept_keys_with_their_values_and_the_metric_tags(exported):
    out, _ = exported
    experiment = read_run(out).experiment
    domains = {h.name: [getattr(v, v.WhichOneof("kind")) for v in h.domain_discrete.values]
               for h in experiment.hparam_infos}
    assert domains == {"lr": [0.1, 0.3, 1.0], "act": ["relu", "tanh"], "widths": ["[16]", "[8,8]"],
                       "bn": [False, True]}  # `note` and `model` do not vary; lr=1.0 is a pending job's
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags == [f"summary/{k}" for k in ("final_train_loss", "final_test_loss", "steps_run", "wall_s",
                                              "diverged_at", "final_weight_norm", "step_at_0.1")]
    assert [m.display_name for m in experiment.metric_infos] == [t.removeprefix("summary/") for t in tags]


def test_a_sweep_without_recorded_axes_takes_the_keys_that_vary(tmp_path):
    from support.sweeps import make_db as toy_db

    db = toy_db(tmp_path / "toy.db")
    export_tensorboard(db, tmp_path / "out", "toy")
    assert {h.name for h in read_run(tmp_path / "out").experiment.hparam_infos} == {"lr", "width", "seed"}
    assert read_run(tmp_path / "out" / "job-000001").hparams == {"lr": 0.01, "width": 16.0, "seed": 0.0}


def test_scalar_events_are_the_bytes_protobuf_writes():
    from tensorboard.compat.proto import event_pb2, summary_pb2

    events = tfevents.Events(tfevents.load(), 1234.5)
    steps, values = [0, 1, 127, 128, 300, 2**40, -1], [0.0, -1.5, 1e-30, 3.25, float("nan"), 1e39, 7.0]
    for step, value, got in zip(steps, values, events.scalars("täg/x", steps, tfevents.float32(values))):
        want = event_pb2.Event(wall_time=1234.5, step=step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="täg/x", simple_value=value)]))
        assert got == want.SerializeToString(), (step, value)


def test_masked_crc32c_is_tensorboards_own_for_records_of_any_length():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    rng = random.Random(7)
    records = [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 8, 40, 41, 300]))) for _ in range(60)]
    assert masked_crc32c(records).tolist() == [reference(r) for r in records]
    assert masked_crc32c([]).tolist() == []


def test_an_earlier_export_is_refused_then_replaced_whole_with_overwrite(db, tmp_path):
    out = tmp_path / "runs"
    export_tensorboard(db, out, mixed.SWEEP)
    (out / "job-999999").mkdir()  # a run the next export would not write
    with pytest.raises(UserError, match=r"already holds a TensorBoard export \(sweep 'mixed', 7 runs.*--overwrite"):
        export_tensorboard(db, out, "other")
    done = export_tensorboard(db, out, "other", overwrite=True)
    assert done.runs == 1 and sorted(p.name for p in out.iterdir() if p.is_dir()) == ["job-000010"]
    assert json.loads((out / MARKER).read_text())["sweep"] == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # nothing left beside it


def test_a_folder_holding_other_files_or_a_file_is_refused_and_left_alone(db, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for target, overwrite in ((tmp_path / "mine", True), (tmp_path / "mine" / "notes.txt", False)):
        with pytest.raises(UserError, match="name a new or empty folder for -o"):
            export_tensorboard(db, target, mixed.SWEEP, overwrite=overwrite)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_an_empty_folder_is_filled(db, tmp_path):
    (tmp_path / "empty").mkdir()
    assert export_tensorboard(db, tmp_path / "empty", mixed.SWEEP).runs == 7
    assert (tmp_path / "empty" / "job-000001").is_dir()


def test_a_failed_write_leaves_the_earlier_export_as_it_was(db, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    export_tensorboard(db, out, mixed.SWEEP)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def full(path: Path, framed: list[bytes]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tb_export, "_write_file", full)
    with pytest.raises(UserError, match="cannot write the export to .*No space left on device"):
        export_tensorboard(db, out, mixed.SWEEP, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_a_missing_tensorboard_is_a_user_error_naming_the_extra(db, tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import tensorboard...` now fails, as when not installed
    with pytest.raises(UserError, match=r"needs the tensorboard package.*pip install 'runner\[tensorboard\]'"):
        export_tensorboard(db, tmp_path / "out", mixed.SWEEP)
    assert not any(tmp_path.iterdir())


def test_an_unknown_sweep_or_one_with_nothing_finished_is_a_user_error(tmp_path):
    db = mixed.make_db(tmp_path / "own.db")
    with pytest.raises(NoSuchSweep):
        export_tensorboard(db, tmp_path / "out", "nope")
    with pytest.raises(UserError, match="holds 2 sweeps: name one with --sweep"):
        export_tensorboard(db, tmp_path / "out")
    from runner.queue.store import Store

    with Store(db) as store:
        store.add_jobs("queued", [("q", {"lr": 1})])
    with pytest.raises(UserError, match=r"sweep 'queued' has no finished job to export \(1 pending\)"):
        export_tensorboard(db, tmp_path / "out", "queued")
    assert not (tmp_path / "out").exists()


def test_the_working_folder_is_refused_even_when_empty(db, tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for target in (".", "..", str(tmp_path)):
        with pytest.raises(UserError, match="holds the working folder: name a new folder for the runs"):
            export_tensorboard(db, target, mixed.SWEEP)
    assert export_tensorboard(db, "runs", mixed.SWEEP).output == Path("runs")  # relative names work
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["runs"]


def test_jobs_that_all_failed_are_runs_with_their_hparams_and_nothing_else(tmp_path):
    from runner.queue.store import JobOutcome, JobStatus, Store

    db = str(tmp_path / "failed.db")
    with Store(db, create=True) as store:
        store.add_jobs("bad", [(f"h{lr}", {"lr": lr}) for lr in (0.1, 0.2)], max_attempts=1)
        while (job := store.claim("w", host="h", device="cpu")) is not None:
            store.finish(job.id, job.token, JobOutcome(JobStatus.FAILED, {}, error="boom"))
    assert export_tensorboard(db, tmp_path / "out").runs == 2
    run = read_run(tmp_path / "out" / "job-000002")
    assert (run.scalars, run.hparams, run.status) == ({}, {"lr": 0.2}, "STATUS_FAILURE")
    assert list(read_run(tmp_path / "out").experiment.metric_infos) == []
