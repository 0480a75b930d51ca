"""The one generic training loop every job runs.

It imports neither the queue nor the CLI: `runner.train(config)` runs it inline, workers run it
for queued jobs. Per-step losses stay on the device and are read in chunks, so the loop never
synchronises with the GPU per step; thresholds and divergence are decided from each chunk
exactly as a step-by-step reading would.

Its parts each own their state: the data (data.JobData), the recorded series (records.Records),
the loss tracker (thresholds.LossTracker), the model and the optimizer; a checkpoint is the dict
of their states, restored part by part.
"""
from __future__ import annotations

import contextlib
import enum
import functools
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from ..errors import UserError, setup_error
from ..hashing import config_hash
from . import checkpoints
from .capture import StepGraph, capture_blocker
from .data import Batch, JobData
from .grabbing import GrabContext, run_grabs
from .optim import LOSSES, accuracy, direct_step, make_optimizer, precision
from .options import TrainOptions
from .plan import JobPlan, plan_job
from .plan import params as model_params
from .records import Records
from .schedule import LrPlan, every
from .thresholds import LossTracker, crossings_since, finite_or_none

CHUNK = 256  # steps between host reads of the loss


class RunStatus(str, enum.Enum):
    """How a run ended: trained to its last step (or stopped on its thresholds), a non-finite loss,
    or stopped early by `should_stop` with a checkpoint to resume from. Compares equal to its text."""

    DONE = "done"
    DIVERGED = "diverged"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


@dataclass
class TrainResult:
    """What one job produced: status (a RunStatus), summary, series, arrays."""

    status: RunStatus
    summary: dict[str, Any]
    metrics: list[tuple[int, str, float]] = field(default_factory=list)
    arrays: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    reason: str | None = None

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric series."""
        pts = [(s, v) for s, n, v in self.metrics if n == name]
        return np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=np.float64)


def derive_seeds(seed: int, *, data_seed: int | None = None, model_seed: int | None = None) -> dict[str, int]:
    """Independent seeds for the data stream (and what its factory draws: a teacher), the test set,
    the model's init, minibatch order ("sample") and in-model randomness ("dropout"), all derived from
    `seed` as always. `data_seed` derives the data side (data, test, sample) from itself instead, and
    `model_seed` the model side (model, dropout): the same data with another init, or the reverse."""
    seeds = _spawn(seed)
    seeds["dropout"] = seeds["sample"]  # one stream for both, as before model_seed existed
    if data_seed is not None:
        own = _spawn(data_seed)
        seeds.update(data=own["data"], test=own["test"], sample=own["sample"])
    if model_seed is not None:
        own = _spawn(model_seed)
        seeds.update(model=own["model"], dropout=own["sample"])
    return seeds


def job_seeds(options: TrainOptions) -> dict[str, int]:
    """derive_seeds of a job's options."""
    return derive_seeds(options.seed, data_seed=options.data_seed, model_seed=options.model_seed)


def _spawn(seed: int) -> dict[str, int]:
    return dict(_spawned(seed))


@functools.lru_cache(maxsize=1 << 16)  # a fused group's members share seeds (a sweep's lrs at one seed)
def _spawned(seed: int) -> tuple[tuple[str, int], ...]:
    children = np.random.SeedSequence(seed).spawn(4)
    values = [int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in children]
    return tuple(zip(("data", "test", "model", "sample"), values))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(config: dict[str, Any] | JobPlan, *, device: str | torch.device | None = None,
          should_stop: Callable[[], bool] | None = None, checkpoint_path: str | Path | None = None,
          threads: int | None = 1, seal: checkpoints.Seal | None = None,
          initial_weights: Mapping[str, Any] | None = None) -> TrainResult:
    """Run one job inline and return its results (validates the config first).

    With `checkpoint_path`, a checkpoint there for this config is resumed from, one is saved
    every `checkpoint_every` steps and when `should_stop` ends the run early (status 'stopped').
    `threads`: torch's intra-op threads for the call (see intra_op_threads; None: leave them).
    `seal` (a worker's): the file is resumed only if the queue recorded it, and each save is recorded.
    `initial_weights` (parameter name -> array): the weights a job with `init_from` starts from (its
    worker reads them from the queue)."""
    plan = config if isinstance(config, JobPlan) else plan_job(dict(config))
    dev = torch.device(device) if device is not None else default_device()
    if plan.options.members:  # a job of members: each trained as a job of its own, then compared
        from .members import train_members

        with intra_op_threads(threads):
            return train_members(plan, dev, should_stop or (lambda: False), initial_weights)
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    started = time.perf_counter()
    # the whole job, set-up included, runs at the configured matmul precision
    with intra_op_threads(threads), precision(plan.options.precision, dev) as autocast:
        return _Loop(plan, dev, autocast, should_stop or (lambda: False), path, started, seal, initial_weights).run()


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the length of a call, the caller's restored after; None
    leaves it alone (a worker process has set its own). One thread by default, as GPU workers and one
    CPU worker per core get: a small network trains several times faster on one thread than on many (the README's
    example on 2 cores: 0.8 s on one, 2.7-5.7 s on two); pass more for large models on a CPU."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads must be a whole number of at least 1 (or None: leave torch's setting), got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model_kwargs(plan: JobPlan, data: JobData, seed: int) -> dict[str, Any]:
    """The model constructor's arguments: the config's, d_in and d_out read from the data unless the
    config sets them (kept only where the constructor takes them)."""
    kwargs = dict(plan.model_kwargs)
    X, y = data.probe(seed)
    kwargs.setdefault("d_in", X.shape[-1])
    if "d_out" not in kwargs:
        if plan.options.loss == "cross_entropy":
            kwargs["d_out"] = data.n_classes or int(y.max().item()) + 1
        else:
            kwargs["d_out"] = 1 if y.dim() == 1 else y.shape[-1]
    accepted = {p.name for p in model_params(plan.model.fn)}
    return {k: v for k, v in kwargs.items() if k in accepted or k not in ("d_in", "d_out")}


def build_model(plan: JobPlan, data: JobData, device: torch.device, seed: int,
                initial_weights: Mapping[str, Any] | None = None, kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The configured model (its arguments: `kwargs`, else model_kwargs); a job with `init_from`
    starts from `initial_weights` (UserError without them: only a queue has them)."""
    kwargs = model_kwargs(plan, data, seed) if kwargs is None else kwargs
    # Initialise on the CPU under a private RNG: same weights on every device, global RNG untouched.
    # Only the CPU generator is seeded (torch.manual_seed also seeds every accelerator's, which costs
    # more than building a small model: a fused group builds a thousand).
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        try:
            model = plan.model.fn(**kwargs)
        except Exception as exc:
            raise setup_error(f"model {plan.model.ref}", exc) from exc
    if plan.options.init_from is not None:
        if initial_weights is None:
            source = plan.options.init_from
            raise UserError(f"init_from names job {source['job']} of a queue, whose weights only a worker reads: "
                            "run the job through runner workers (or pass initial_weights)")
        from .loading import load_weights

        load_weights(model, initial_weights)
    return model if device.type == "cpu" else model.to(device)  # (built there: .to would walk every module)


def redraw_model(model: torch.nn.Module, seed: int) -> bool:
    """Draw `model`'s weights again, in place, as building it with `seed` draws them, through its
    `reinitialise()` (the built-in mlp and dln have one). False, and nothing drawn, where the model has
    none or declines (mup). A fused group redraws one module per member instead of building each."""
    reinitialise = getattr(model, "reinitialise", None)
    if reinitialise is None:
        return False
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        return bool(reinitialise())


class _Loop:
    """One job's run: `__init__` sets everything up (resuming a checkpoint), `run()` trains to the end."""

    def __init__(self, plan: JobPlan, device: torch.device, autocast: Callable[[], contextlib.AbstractContextManager[Any]],
                 should_stop: Callable[[], bool], checkpoint_path: Path | None, started: float,
                 seal: checkpoints.Seal | None = None, initial_weights: Mapping[str, Any] | None = None):
        o = plan.options
        self.plan, self.o, self.device, self.autocast, self.should_stop = plan, o, device, autocast, should_stop
        self.checkpoint_path, self.seal = checkpoint_path, seal
        self.config_hash = config_hash(plan.config)
        self.started = started
        self.wall_before = 0.0  # seconds spent before a resume
        self.checkpoint_error: str | None = None  # the last checkpoint write that failed, for the summary
        self.loss_fn = LOSSES[o.loss]
        seeds = job_seeds(o)
        # The parts, in the order their random draws have always happened.
        self.data = JobData(plan, device, seeds)
        self.model = build_model(plan, self.data, device, seeds["model"], initial_weights)
        self.optimizer = make_optimizer(o, self.model, capturable=device.type == "cuda")
        self.optimizer_step = direct_step(self.optimizer)  # no torch._dynamo import at the first step
        self.lr_plan = LrPlan(o, self.optimizer)
        self.init_params = [p.detach().clone() for p in self.model.parameters()]
        torch.manual_seed(seeds["dropout"])  # dropout and other in-model randomness
        self.tracker = LossTracker(o.thresholds, o.ema)
        self.records = Records(o.eval_every)
        self.batch: Batch | None = None  # the last step's batch (grabs see it)
        saved = checkpoints.load(checkpoint_path, self.config_hash, seal) if checkpoint_path else None
        if saved:
            self._restore(saved)
        self.start = int(saved["step"]) if saved else 0
        self.resumed_from = self.start if saved else None  # step 0 counts: a stop before the first step
        blocker = capture_blocker(o, device)
        self.capture_note = f"off: {blocker}" if blocker else ""
        self.stepper: StepGraph | None = None  # replays captured steps (CUDA); None: every step eager
        if blocker is None:
            self.stepper = StepGraph(model=self.model, optimizer=self.optimizer, eager_step=self._eager_step,
                                     device=device, restart_stream=self._restart_stream)
            self.stepper.use_data(self.data.next_batch, self.data.data_gen)
        self.setup_s = time.perf_counter() - started  # data, model, optimizer, checkpoint load

    # the job ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train from the start (or resumed) step to the end, then the final measurements."""
        o = self.o
        status, steps_run = self._train(self.start, o.steps)
        if status == RunStatus.STOPPED:
            if self.checkpoint_path:
                self._save(steps_run)
        elif status != RunStatus.DIVERGED:
            self._evaluate(steps_run, final=True)
            if self.plan.grabs:
                self._grab(steps_run)
            if o.snapshot_at_end(steps_run):
                self.records.weights(steps_run, self.model)
            self.tracker.update(self.records.flush([], steps_run), steps_run)  # CPU-GPU sync: the final values
        return self._result(status, steps_run, self.wall_before + time.perf_counter() - self.started)

    def _train(self, start: int, steps: int) -> tuple[RunStatus, int]:
        o, stepper, lr_plan = self.o, self.stepper, self.lr_plan
        save_every = o.checkpoint_every if self.checkpoint_path else 0
        change_steps = {c.at for c in o.changes if c.batch_size is not None}
        snapshot_steps = o.snapshot_steps()
        lr_steps = lr_plan.steps  # a resume needs no extra apply: the optimizer's state holds the lr it had
        losses: list[torch.Tensor] = []  # this chunk's losses, still on the device
        first = start
        # at_thresholds and stop_on_thresholds go back to a crossing inside the chunk just read: keep its start
        rewinds = bool(o.thresholds) and bool(o.at_thresholds or o.stop_on_thresholds)
        mark = self._mark(start) if rewinds else None
        for step in range(start, steps):
            if step in change_steps:
                self.data.apply_changes(step)
                if stepper is not None:
                    stepper.use_data(self.data.next_batch, self.data.data_gen)  # the graph holds the old batch size
            if lr_plan.every_step or step in lr_steps:
                lr_plan.apply(step)
                if stepper is not None:
                    stepper.reset()  # the graph holds the old lr
            if every(o.eval_every, step) or step == 0:
                self._evaluate(step, final=False)  # queued on the device, read with the next flush
            if step in snapshot_steps:
                self.records.weights(step, self.model)  # a sync: the weights come to the host now
            if every(o.grab_every, step) and self.plan.grabs:
                self._grab(step)  # grabs may read values back: the GPU catches up here
                if stepper is not None:
                    stepper.check_grads()
            loss, self.batch = stepper.step(step) if stepper is not None else self._eager_step(step)
            losses.append(loss)
            stop = self.should_stop()
            save = every(save_every, step + 1) and step + 1 < steps
            if len(losses) == CHUNK or step + 1 == steps or stop or save:
                # the one CPU-GPU sync point of a chunk: its losses and evaluations come to the host
                self.tracker.update(self.records.flush(losses, first), first)
                if mark is not None:
                    crossed, last = crossings_since(self.tracker, first)
                    ends_at = last if o.stop_on_thresholds and last is not None and (
                        self.tracker.nonfinite_at is None or last < self.tracker.nonfinite_at) else None
                    if crossed and (o.at_thresholds or ends_at is not None):
                        self._at_crossings(mark, crossed, ends_at, step + 1)
                        if ends_at is not None:
                            self.tracker.nonfinite_at = None  # (a later step's, which the job never reaches now)
                            return RunStatus.DONE, ends_at
                losses, first = [], step + 1
                if self.tracker.nonfinite_at is not None:
                    return RunStatus.DIVERGED, step + 1
                if stop:
                    return RunStatus.STOPPED, step + 1
                if save:
                    self._save(step + 1)
                if mark is not None:
                    mark = self._mark(step + 1)
        return RunStatus.DONE, steps

    # going back to a threshold's crossing ----------------------------------------------------
    def _mark(self, step: int) -> dict[str, Any]:
        """What `_rewind` needs to go back to `step` (taken after a host read: the GPU is idle):
        copies of the weights, optimizer state and last gradients, the data's and RNGs' states."""
        return {"step": step, "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "optimizer": _cloned(self.optimizer.state_dict()),
                "grads": [None if p.grad is None else p.grad.detach().clone() for p in self.model.parameters()],
                "rng": {"cpu": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None},
                "data": self.data.mark(),
                "batch": None if self.batch is None else tuple(t.clone() for t in self.batch)}

    def _rewind(self, mark: dict[str, Any]) -> None:
        """Back to a mark: every part as it was at its step (the series recorded since are kept)."""
        self.data.rewind(mark["data"], fresh_stream=True)
        self.model.load_state_dict(mark["model"])
        self.optimizer.load_state_dict(_cloned(mark["optimizer"]))
        for p, g in zip(self.model.parameters(), mark["grads"]):
            p.grad = None if g is None else g.clone()
        torch.set_rng_state(mark["rng"]["cpu"])
        if mark["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(mark["rng"]["cuda"], self.device)
        self.batch = None if mark["batch"] is None else tuple(t.clone() for t in mark["batch"])
        if self.stepper is not None:  # the graph holds the stream and optimizer state of before
            self.stepper.use_data(self.data.next_batch, self.data.data_gen)

    def _replay(self, start: int, end: int) -> None:
        """Steps start .. end - 1 again, as the loop ran them (changes, learning rates; captured again
        on a GPU: a replayed chunk costs about what it cost the first time)."""
        change_steps = {c.at for c in self.o.changes if c.batch_size is not None}
        stepper = self.stepper
        for step in range(start, end):
            if step in change_steps:
                self.data.apply_changes(step)
                if stepper is not None:
                    stepper.use_data(self.data.next_batch, self.data.data_gen)
            if self.lr_plan.every_step or step in self.lr_plan.steps:
                self.lr_plan.apply(step)
                if stepper is not None:
                    stepper.reset()
            _, self.batch = stepper.step(step) if stepper is not None else self._eager_step(step)

    def _at_crossings(self, mark: dict[str, Any], crossed: list[int], ends_at: int | None, now: int) -> None:
        """The chunk read holds threshold crossings: go back to its start, replay to each crossing and
        measure there (at_thresholds), and either end at `ends_at` (stop_on_thresholds: the caller
        ends the job there) or come back to step `now` exactly as it was."""
        o = self.o
        back = None if ends_at is not None else self._mark(now)
        self._rewind(mark)
        at = mark["step"]
        for step in [s for s in crossed if ends_at is None or s < ends_at] + ([ends_at] if ends_at is not None else []):
            self._replay(at, step)
            at = step
            if step == ends_at:
                break  # the final measurements of the job are this step's
            if "eval" in o.at_thresholds and not (every(o.eval_every, step) or step == 0):
                self._evaluate(step, final=False)
            if "grabs" in o.at_thresholds and self.plan.grabs and not every(o.grab_every, step):
                self._grab(step)
                if self.stepper is not None:
                    self.stepper.check_grads()
        if ends_at is not None:
            self.records.end_at(ends_at)
        else:
            self._rewind(back)  # type: ignore[arg-type]

    def _eager_step(self, step: int, batch: Batch | None = None) -> tuple[torch.Tensor, Batch]:
        """One step without a graph (on `batch` when given); returns (detached loss, the batch)."""
        if batch is None:
            batch = self.data.next_batch(step)
        with self.autocast():
            loss = self.loss_fn(self.model(batch[0]), batch[1])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_step()
        return loss.detach(), batch

    def _restart_stream(self, stream_state: torch.Tensor) -> None:
        """For step capture: the online stream on a fresh generator at `stream_state` (see StepGraph)."""
        self.data.restart_stream(stream_state)
        self.stepper.use_data(self.data.next_batch, self.data.data_gen)  # type: ignore[union-attr]

    # measurements -------------------------------------------------------------------------
    def _evaluate(self, step: int, final: bool) -> None:
        """Test (and offline: train) loss and accuracy at this step, left on the device until the next flush."""
        data, records = self.data, self.records
        if self.lr_plan.varies and not final:
            records.metric(step, "lr", self.lr_plan.lr(step))
        self.model.eval()
        with torch.no_grad(), self.autocast():
            sets = [("test", data.X_test, data.y_test)]
            if data.X_train is not None:
                sets.append(("train", data.X_train, data.y_train))
            elif final:
                sets.append(("train", *data.next_batch(step)))  # online: a fresh batch at the end
            for name, X, y in sets:
                if X is None:
                    continue
                out = self.model(X)
                records.scalar(step, f"{name}_loss", self.loss_fn(out, y).float())
                acc = accuracy(self.o.loss, out, y)
                if acc is not None:
                    records.scalar(step, f"{name}_acc", acc)
        self.model.train()

    def _grab(self, step: int) -> None:
        data = self.data
        ctx = GrabContext(model=self.model, step=step, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test,
                          y_test=data.y_test, optimizer=self.optimizer, init_params=self.init_params,
                          config=self.plan.config, loss_fn=self.loss_fn, batch=self.batch)
        run_grabs(self.plan.grabs, ctx, self.records.record)

    # checkpoints ------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        """Everything needed to continue at `step` exactly as if never interrupted: each part's state."""
        state = checkpoints.job_state(
            config_hash=self.config_hash, step=step, wall_s=self.wall_before + time.perf_counter() - self.started,
            model=self.model, optimizer=self.optimizer, device=self.device, data=self.data, batch=self.batch,
            tracker=self.tracker, records=self.records)
        # a failed write is a warning on the job, never its end
        self.checkpoint_error = checkpoints.try_save(self.checkpoint_path, state, self.seal) or self.checkpoint_error  # type: ignore[arg-type]
        if self.seal is not None:
            self.seal.flush()

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint made by `_save`, part by part (the data first: it replays the
        batch-size changes up to the step, whose factories may draw from the global RNG)."""
        self.data.restore(state["data"], int(state["step"]))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for p, g in zip(self.model.parameters(), state["grads"]):
            p.grad = None if g is None else g.to(self.device)
        torch.set_rng_state(state["rng"]["cpu"])
        if state["rng"]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.batch = None if state["batch"] is None else tuple(t.to(self.device) for t in state["batch"])
        self.tracker.restore(state["tracker"])
        self.records.restore(state["records"])
        self.wall_before = float(state["wall_s"])

    def _result(self, status: RunStatus, steps_run: int, wall_s: float) -> TrainResult:
        capture = self.stepper.describe() if self.stepper is not None else self.capture_note
        return job_result(status, steps_run, wall_s, setup_s=self.setup_s, device=self.device, options=self.o,
                          tracker=self.tracker, records=self.records, step_capture=capture,
                          resumed_from=self.resumed_from,
                          extra={"checkpoint_error": self.checkpoint_error} if self.checkpoint_error else None)


def _cloned(value: Any) -> Any:
    """A copy of a state dict's tensors (nested in dicts and lists), so later steps cannot change it."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cloned(v) for v in value]
    return value


LOOP_METRICS = frozenset({"train_loss", "test_loss", "train_acc", "test_acc", "batch_loss", "lr"})  # not a grab's


def job_result(status: RunStatus, steps_run: int, wall_s: float, *, setup_s: float, device: torch.device,
               options: TrainOptions, tracker: LossTracker, records: Records, step_capture: str,
               resumed_from: int | None, extra: dict[str, Any] | None = None) -> TrainResult:
    """What a run ended with: its summary (the result columns), finite metric points and arrays, and
    the reason it diverged. `extra` adds summary keys (a fused member's `fused`)."""
    metrics = records.metrics
    final = {n: v for s, n, v in metrics if s == steps_run and n.endswith(("_loss", "_acc")) and n != "batch_loss"}
    summary: dict[str, Any] = {
        "final_train_loss": finite_or_none(final.get("train_loss")),
        "final_test_loss": finite_or_none(final.get("test_loss")),
        "steps_run": steps_run,
        "wall_s": round(wall_s, 4),
        "setup_s": round(setup_s, 4),
        "device": str(device),
        "host": socket.gethostname(),
        "precision": options.precision,
        "step_capture": step_capture,
        **(extra or {}),
        **tracker.summary(),
    }
    if resumed_from is not None:
        summary["resumed_from_step"] = resumed_from
    for key in ("train_acc", "test_acc"):
        if key in final:
            summary[f"final_{key}"] = finite_or_none(final[key])
    # the last value each grab measured, as result columns (final_hessian_trace, final_weight_norm.total...)
    last: dict[str, tuple[int, float]] = {}
    for step, name, value in metrics:
        if name not in LOOP_METRICS and step >= last.get(name, (-1, 0.0))[0]:
            last[name] = (step, value)
    for name, (_, value) in last.items():
        summary.setdefault(f"final_{name}", finite_or_none(value))
    reason = None
    if status == RunStatus.DIVERGED:
        summary["diverged_at"] = tracker.nonfinite_at
        reason = f"non-finite train loss at step {tracker.nonfinite_at}"
    finite = [m for m in metrics if np.isfinite(m[2])]
    return TrainResult(status, summary, finite, records.arrays, reason)
