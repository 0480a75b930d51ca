"""The one generic training loop every job runs.

It imports neither the queue nor the CLI: `runner.train(config)` runs it inline, workers run it
for queued jobs. Per-step losses stay on the device and are read in chunks, so the loop never
synchronises with the GPU per step; thresholds and divergence are decided from each chunk
exactly as a step-by-step reading would.
"""
from __future__ import annotations

import contextlib
import math
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..hashing import config_hash
from . import checkpoints
from .capture import StepGraph, capture_blocker
from .plan import JobPlan, plan_job
from .plan import params as model_params
from .thresholds import LossTracker, finite_or_none

CHUNK = 256  # steps between host reads of the loss


@dataclass
class TrainResult:
    """What one job produced: status ('done', 'diverged' or 'stopped'), summary, series, arrays."""

    status: str
    summary: dict[str, Any]
    metrics: list[tuple[int, str, float]] = field(default_factory=list)
    arrays: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    reason: str | None = None

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric series."""
        pts = [(s, v) for s, n, v in self.metrics if n == name]
        return np.array([p[0] for p in pts], dtype=np.int64), np.array([p[1] for p in pts], dtype=np.float64)


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for the data stream, the test set, the model's init and minibatch order."""
    children = np.random.SeedSequence(seed).spawn(4)
    values = [int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in children]
    return dict(zip(("data", "test", "model", "sample"), values))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(config: dict[str, Any] | JobPlan, *, device: str | torch.device | None = None,
          should_stop: Callable[[], bool] | None = None, checkpoint_path: str | Path | None = None) -> TrainResult:
    """Run one job inline and return its results (validates the config first).

    With `checkpoint_path`, a checkpoint there for this config is resumed from, one is saved
    every `checkpoint_every` steps and when `should_stop` ends the run early (status 'stopped')."""
    plan = config if isinstance(config, JobPlan) else plan_job(dict(config))
    dev = torch.device(device) if device is not None else default_device()
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    return _Loop(plan, dev, should_stop or (lambda: False), path).run()


# --- losses -------------------------------------------------------------------------------

def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y.reshape(out.shape))


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y.long())


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(-1), y.reshape(-1).to(out.dtype))


LOSSES = {"mse": _mse, "cross_entropy": _cross_entropy, "bce": _bce}


def _accuracy(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    if loss == "cross_entropy":
        return (out.argmax(-1) == y.long()).float().mean()
    if loss == "bce":
        return ((out.reshape(-1) > 0) == (y.reshape(-1) > 0.5)).float().mean()
    return None


def _make_optimizer(o: dict[str, Any], model: torch.nn.Module, capturable: bool = False) -> torch.optim.Optimizer:
    """The configured optimizer; its muP version (MuSGD, MuAdam, MuAdamW) for a model with base shapes.
    `capturable` (every CUDA job, captured or not, so both compute alike): Adam keeps its step count
    on the device, so its step can be recorded in a CUDA graph."""
    params = list(model.parameters())
    if any(hasattr(p, "infshape") for p in params):
        import mup

        sgd, adam, adamw = mup.MuSGD, mup.MuAdam, mup.MuAdamW
    else:
        sgd, adam, adamw = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
    if o["optimizer"] == "sgd":
        return sgd(params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=o["weight_decay"])
    cls = adam if o["optimizer"] == "adam" else adamw
    extra = {"capturable": True} if capturable else {}
    return cls(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"], **extra)


@contextlib.contextmanager
def _precision(mode: str, device: torch.device) -> Iterator[contextlib.AbstractContextManager[Any]]:
    """Set matmul precision for one job and restore it; yields the autocast context for bf16."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if mode == "tf32" else "highest")
    try:
        if mode == "bf16":
            # no cast cache: CUDA graphs need it off, and eager steps then compute exactly what replays do
            yield lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
        else:
            yield contextlib.nullcontext
    finally:
        torch.set_float32_matmul_precision(previous)


# --- the loop ------------------------------------------------------------------------------

class _Loop:
    """State of one job's run; `run()` is the whole life of the job."""

    def __init__(self, plan: JobPlan, device: torch.device, should_stop: Callable[[], bool], checkpoint_path: Path | None):
        self.plan, self.o, self.device, self.should_stop = plan, plan.options, device, should_stop
        self.checkpoint_path = checkpoint_path
        self.config_hash = config_hash(plan.config)
        self.started = self.wall_before = 0.0  # wall_before: seconds spent before a resume
        self.resumed_from: int | None = None
        self.setup_s = 0.0
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None  # the last step's batch (grabs see it)
        self.metrics: list[tuple[int, str, float]] = []
        self.arrays: list[tuple[str, int, np.ndarray]] = []
        self.pending: list[tuple[int, str, torch.Tensor]] = []  # device scalars awaiting the next host read
        self.tracker = LossTracker(self.o["thresholds"], self.o["ema"])
        self.stepper: StepGraph | None = None  # replays captured steps (CUDA); None: every step eager
        self.capture_note = ""

    # data ---------------------------------------------------------------------------------
    def _factory(self, batch_size: int, seed: int) -> tuple[Callable[[int], tuple[torch.Tensor, torch.Tensor]], torch.Generator]:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        fn = self.plan.batchfn.fn(**self.plan.batchfn_kwargs, batch_size=batch_size, gen=gen, device=self.device)
        return fn, gen

    def _setup_data(self, seeds: dict[str, int]) -> None:
        o = self.o
        self.seeds = seeds
        self.X_test = self.y_test = self.X_train = self.y_train = None
        self.data_gen: torch.Generator | None = None  # online: the stream's generator, saved in checkpoints
        self.sampler: _EpochSampler | None = None     # offline minibatches: epoch permutations
        if o["n_test"]:
            # Same data seed as training, so whatever the factory draws up front (a teacher) is shared;
            # the samples themselves come from the test stream, which never overlaps training's.
            fn, gen = self._factory(o["n_test"], seeds["data"])
            gen.manual_seed(seeds["test"])
            self.X_test, self.y_test = fn(0)
        if o["online"]:
            self.online_batch_size = o["batch_size"]
            self.next_batch, self.data_gen = self._factory(o["batch_size"], seeds["data"])
            self.n_classes = getattr(self.next_batch, "n_classes", None)
            return
        fn, _ = self._factory(o["n_train"], seeds["data"])
        self.n_classes = getattr(fn, "n_classes", None)
        self.X_train, self.y_train = fn(0)
        n, bs = o["n_train"], o["batch_size"]
        if bs is None or bs >= n:
            self.next_batch = self._full_batch
            return
        self._use_sampler(bs)

    def _full_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline without minibatches: the whole training set every step."""
        return self.X_train, self.y_train

    _full_batch.capturable = True  # type: ignore[attr-defined]  # the same tensors every step

    def _use_sampler(self, batch_size: int) -> None:
        """Offline minibatches of batch_size from the training set (the sampler is made once)."""
        if self.sampler is None:
            gen = torch.Generator(device=self.device).manual_seed(self.seeds["sample"])
            self.sampler = _EpochSampler(self.o["n_train"], batch_size, gen)
        self.sampler.bs = batch_size
        self.next_batch = lambda step: self.sampler.batch(self.X_train, self.y_train)

    def _set_batch_size(self, batch_size: int, stream_state: torch.Tensor | None = None) -> None:
        """A scheduled batch-size change: online, the same data stream continues in batches of the
        new size (same teacher, generator state carried over, or `stream_state`); offline,
        minibatches of the new size."""
        o = self.o
        if o["online"]:
            fn, gen = self._factory(batch_size, self.seeds["data"])  # same seed: the same teacher
            gen.set_state(self.data_gen.get_state() if stream_state is None else stream_state)
            self.next_batch, self.data_gen, self.online_batch_size = fn, gen, batch_size
        elif batch_size >= o["n_train"]:
            self.next_batch = self._full_batch
        else:
            self._use_sampler(batch_size)
        if self.stepper is not None:
            self.stepper.use_data(self.next_batch, self.data_gen)

    def _apply_changes(self, step: int, upto: bool = False) -> None:
        """Batch-size changes due at `step` (with upto, every change at or before it: a resume)."""
        for change in self.o["changes"]:
            if "batch_size" in change and (change["at"] <= step if upto else change["at"] == step):
                self._set_batch_size(change["batch_size"])

    def _build_model(self, seed: int) -> torch.nn.Module:
        kwargs = dict(self.plan.model_kwargs)
        X, y = (self.X_train, self.y_train) if self.X_train is not None else (self.X_test, self.y_test)
        if X is None:
            probe, _ = self._factory(min(self.o["batch_size"], 1024), seed)
            X, y = probe(0)
        kwargs.setdefault("d_in", X.shape[-1])
        if "d_out" not in kwargs:
            if self.o["loss"] == "cross_entropy":
                kwargs["d_out"] = self.n_classes or int(y.max().item()) + 1
            else:
                kwargs["d_out"] = 1 if y.dim() == 1 else y.shape[-1]
        accepted = {p.name for p in model_params(self.plan.model.fn)}
        kwargs = {k: v for k, v in kwargs.items() if k in accepted or k not in ("d_in", "d_out")}
        # Initialise on the CPU under a private RNG: same weights on every device, global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.plan.model.fn(**kwargs)
        return model.to(self.device)

    # measurements -------------------------------------------------------------------------
    def _evaluate(self, step: int, final: bool) -> None:
        o, loss_fn = self.o, LOSSES[self.o["loss"]]
        if self.lr_plan.varies and not final:
            self.metrics.append((step, "lr", self.lr_plan.lr(step)))
        self.model.eval()
        with torch.no_grad(), self.autocast():
            sets = [("test", self.X_test, self.y_test)]
            if self.X_train is not None:
                sets.append(("train", self.X_train, self.y_train))
            elif final:
                sets.append(("train", *self.next_batch(step)))  # online: a fresh batch at the end
            for name, X, y in sets:
                if X is None:
                    continue
                out = self.model(X)
                self.pending.append((step, f"{name}_loss", loss_fn(out, y).float()))
                acc = _accuracy(o["loss"], out, y)
                if acc is not None:
                    self.pending.append((step, f"{name}_acc", acc))
        self.model.train()

    def _grab(self, step: int, last_batch: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        ctx = dict(step=step, X_train=self.X_train, y_train=self.y_train, X_test=self.X_test, y_test=self.y_test,
                   optimizer=self.optimizer, init_params=self.init_params, config=self.plan.config,
                   loss_fn=LOSSES[self.o["loss"]], batch=last_batch)
        for plugin, kwargs in self.plan.grabs:
            name = getattr(plugin.fn, "__runner_name__", None) or plugin.ref.rpartition(":")[2]
            _record(name, step, plugin.fn(self.model, **kwargs, **ctx), self.metrics, self.arrays)

    def _snapshot(self, step: int) -> None:
        """The weights at this step, one array per parameter (weights.<name>), stored with the results."""
        for name, p in self.model.named_parameters():
            self.arrays.append((f"weights.{name}", step, p.detach().float().cpu().numpy().copy()))

    def _flush(self, losses: list[torch.Tensor], first_step: int) -> None:
        """The one host read per chunk: losses and pending evaluations come over together."""
        scalars = [t for _, _, t in self.pending]
        merged = torch.stack([*losses, *scalars]).float().cpu().numpy() if (losses or scalars) else np.zeros(0)
        chunk, evals = merged[: len(losses)], merged[len(losses):]
        self.tracker.update(chunk, first_step)
        every = self.o["eval_every"]
        for i, value in enumerate(chunk.tolist()):
            s = first_step + i
            if (every and s % every == 0) or s == 0:
                self.metrics.append((s, "batch_loss", value))
        self.metrics.extend((s, n, v) for (s, n, _), v in zip(self.pending, evals.tolist()))
        self.pending.clear()

    # the job ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.started = time.perf_counter()
        o = self.o
        seeds = derive_seeds(o["seed"])
        with _precision(o["precision"], self.device) as autocast:
            self.autocast = autocast
            self._setup_data(seeds)
            self.model = self._build_model(seeds["model"])
            blocker = capture_blocker(o, self.device)
            self.optimizer = _make_optimizer(o, self.model, capturable=self.device.type == "cuda")
            self.lr_plan = _LrPlan(o, self.optimizer)
            self.init_params = [p.detach().clone() for p in self.model.parameters()]
            torch.manual_seed(seeds["sample"])  # dropout and other in-model randomness
            saved = checkpoints.load(self.checkpoint_path, self.config_hash) if self.checkpoint_path else None
            start = 0
            if saved:
                start = int(saved["step"])
                self._apply_changes(start, upto=True)  # the data pipeline as it was at that step
                self._restore(saved)
            self.resumed_from = start if saved else None  # step 0 counts: a stop before the first step
            if blocker is None:
                self.stepper = StepGraph(model=self.model, optimizer=self.optimizer, eager_step=self._eager_step,
                                         device=self.device,
                                         restart_stream=lambda state: self._set_batch_size(self.online_batch_size, state))
                self.stepper.use_data(self.next_batch, self.data_gen)
            self.capture_note = f"off: {blocker}" if blocker else ""
            self.setup_s = time.perf_counter() - self.started  # data, model, optimizer, checkpoint load
            status, steps_run = self._train(start, o["steps"])
            if status == "stopped":
                if self.checkpoint_path:
                    self._save(steps_run)
            elif status != "diverged":
                self._evaluate(steps_run, final=True)
                if self.plan.grabs:
                    self._grab(steps_run, self.batch)
                if "end" in o["snapshots"] or (steps_run in o["snapshots"] and steps_run == o["steps"]):
                    self._snapshot(steps_run)
                self._flush([], steps_run)
        return self._result(status, steps_run, self.wall_before + time.perf_counter() - self.started)

    def _train(self, start: int, steps: int) -> tuple[str, int]:
        o, stepper = self.o, self.stepper
        eval_every, grab_every = o["eval_every"], o["grab_every"]
        save_every = o["checkpoint_every"] if self.checkpoint_path else 0
        change_steps = {c["at"] for c in o["changes"] if "batch_size" in c}
        snapshot_steps = {s for s in o["snapshots"] if s != "end"}
        lr_plan = self.lr_plan
        lr_steps = lr_plan.steps  # a resume needs no extra apply: the optimizer's state holds the lr it had
        losses: list[torch.Tensor] = []
        first = start
        for step in range(start, steps):
            if step in change_steps:
                self._apply_changes(step)
            if lr_plan.every_step or step in lr_steps:
                lr_plan.apply(step)
                if stepper is not None:
                    stepper.reset()  # the graph holds the old lr
            if step % eval_every == 0 if eval_every else step == 0:
                self._evaluate(step, final=False)
            if step in snapshot_steps:
                self._snapshot(step)
            if grab_every and step % grab_every == 0 and self.plan.grabs:
                self._grab(step, self.batch)
                if stepper is not None:
                    stepper.check_grads()
            loss, self.batch = stepper.step(step) if stepper is not None else self._eager_step(step)
            losses.append(loss)
            stop = self.should_stop()
            save = save_every and (step + 1) % save_every == 0 and step + 1 < steps
            if len(losses) == CHUNK or step + 1 == steps or stop or save:
                self._flush(losses, first)
                losses, first = [], step + 1
                if self.tracker.nonfinite_at is not None:
                    return "diverged", step + 1
                if o["stop_on_thresholds"] and self.tracker.all_crossed:
                    return "done", step + 1
                if stop:
                    return "stopped", step + 1
                if save:
                    self._save(step + 1)
        return "done", steps

    def _eager_step(self, step: int, batch: tuple[torch.Tensor, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step without a graph (on `batch` when given); returns (detached loss, the batch)."""
        if batch is None:
            batch = self.next_batch(step)
        with self.autocast():
            loss = LOSSES[self.o["loss"]](self.model(batch[0]), batch[1])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), batch

    # checkpoints ------------------------------------------------------------------------
    def _save(self, step: int) -> None:
        """Everything needed to continue at `step` exactly as if never interrupted."""
        cuda = self.device.type == "cuda"
        state = {
            "format": checkpoints.FORMAT, "config_hash": self.config_hash, "step": step,
            "wall_s": self.wall_before + time.perf_counter() - self.started,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            # the last step's gradients: a grab at the resume step (grad_norm) reads them
            "grads": [None if p.grad is None else p.grad.detach().cpu() for p in self.model.parameters()],
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if cuda else None,
            "data_gen": None if self.data_gen is None else self.data_gen.get_state(),
            "sampler": None if self.sampler is None else self.sampler.state(),
            "batch": None if self.batch is None else [t.cpu() for t in self.batch],
            "tracker": self.tracker.state(),
            "metrics": [[s, n, v] for s, n, v in self.metrics],
            "arrays": [[n, s, torch.from_numpy(np.ascontiguousarray(a))] for n, s, a in self.arrays],
        }
        checkpoints.save(self.checkpoint_path, state)

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a checkpoint made by `_save` (the data pipeline already set up for its step)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for p, g in zip(self.model.parameters(), state["grads"]):
            p.grad = None if g is None else g.to(self.device)
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        if state["data_gen"] is not None and self.data_gen is not None:
            self.data_gen.set_state(state["data_gen"])
        if state["sampler"] is not None and self.sampler is not None:
            self.sampler.restore(state["sampler"], self.device)
        self.batch = None if state["batch"] is None else tuple(t.to(self.device) for t in state["batch"])
        self.tracker.restore(state["tracker"])
        self.metrics = [(int(s), str(n), float(v)) for s, n, v in state["metrics"]]
        self.arrays = [(str(n), int(s), t.numpy()) for n, s, t in state["arrays"]]
        self.wall_before = float(state["wall_s"])

    def _result(self, status: str, steps_run: int, wall_s: float) -> TrainResult:
        final = {n: v for s, n, v in self.metrics if s == steps_run and n.endswith(("_loss", "_acc")) and n != "batch_loss"}
        summary: dict[str, Any] = {
            "final_train_loss": finite_or_none(final.get("train_loss")),
            "final_test_loss": finite_or_none(final.get("test_loss")),
            "steps": steps_run,
            "wall_s": round(wall_s, 4),
            "setup_s": round(self.setup_s, 4),
            "device": str(self.device),
            "host": socket.gethostname(),
            "precision": self.o["precision"],
            "step_capture": self.stepper.describe() if self.stepper is not None else self.capture_note,
            **self.tracker.summary(),
        }
        if self.resumed_from is not None:
            summary["resumed_from_step"] = self.resumed_from
        for key in ("train_acc", "test_acc"):
            if key in final:
                summary[f"final_{key}"] = finite_or_none(final[key])
        reason = None
        if status == "diverged":
            summary["diverged_at"] = self.tracker.nonfinite_at
            reason = f"non-finite train loss at step {self.tracker.nonfinite_at}"
        metrics = [m for m in self.metrics if np.isfinite(m[2])]
        return TrainResult(status, summary, metrics, self.arrays, reason)


class _EpochSampler:
    """Offline minibatches: a fresh permutation of the training set whenever the current one has
    fewer than batch_size samples left (so a batch-size change mid-epoch just carries on)."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.bs, self.gen = n, batch_size, gen
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def batch(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.perm is None or self.pos + self.bs > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen, device=X.device), 0
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return X[idx], y[idx]

    def state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": None if self.perm is None else self.perm.cpu(),
                "pos": self.pos, "batch_size": self.bs}

    def restore(self, state: dict[str, Any], device: torch.device) -> None:
        self.gen.set_state(state["gen"])
        self.perm = None if state["perm"] is None else state["perm"].to(device)
        self.pos, self.bs = int(state["pos"]), int(state["batch_size"])


class _LrPlan:
    """The learning rate at every step: the config's lr, replaced by scheduled changes, times the
    schedule (constant, step decay, cosine to min_lr). Applied as a factor on each parameter
    group's own initial lr, so muP optimizers keep their per-group width scaling."""

    def __init__(self, o: dict[str, Any], optimizer: torch.optim.Optimizer):
        self.o, self.optimizer = o, optimizer
        self.initial = [g["lr"] for g in optimizer.param_groups]
        self.changes = [(c["at"], c["lr"]) for c in o["changes"] if "lr" in c]
        every = o["step_size"] if o["schedule"] == "step" else None
        self.every_step = o["schedule"] == "cosine"
        self.steps = {at for at, _ in self.changes} | (set(range(every, o["steps"], every)) if every else set())

    @property
    def varies(self) -> bool:
        return self.every_step or bool(self.steps)

    def lr(self, step: int) -> float:
        o = self.o
        base = o["lr"]
        for at, lr in self.changes:
            if at <= step:
                base = lr
        if o["schedule"] == "step":
            return base * o["step_gamma"] ** (step // o["step_size"])
        if o["schedule"] == "cosine":
            return o["min_lr"] + (base - o["min_lr"]) * 0.5 * (1 + math.cos(math.pi * step / max(1, o["steps"])))
        return base

    def apply(self, step: int) -> None:
        factor = self.lr(step) / self.o["lr"]
        for group, initial in zip(self.optimizer.param_groups, self.initial):
            group["lr"] = initial * factor


def _record(name: str, step: int, value: Any, metrics: list, arrays: list) -> None:
    """Store a grab's return: numbers become metric points, arrays stay arrays, dicts nest names."""
    if value is None:
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            _record(f"{name}.{key}", step, sub, metrics, arrays)
        return
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy() if value.dtype in (torch.bfloat16, torch.float16) else value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.ndarray):
        arrays.append((name, step, value))
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        metrics.append((step, name, float(value)))
    else:
        raise TypeError(f"grab {name} returned {type(value).__name__}; return a number, a dict of numbers or an array")
