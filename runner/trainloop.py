"""The one generic training loop every job runs.

It imports neither the queue nor the CLI: `runner.train(config)` runs it inline, workers run it
for queued jobs. Per-step losses stay on the device and are read in chunks, so the loop never
synchronises with the GPU per step; thresholds and divergence are decided from each chunk
exactly as a step-by-step reading would.
"""
from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .thresholds import LossTracker, finite_or_none
from .validate import JobPlan, plan_job
from .validate import params as model_params

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
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run one job inline and return its results (validates the config first)."""
    plan = config if isinstance(config, JobPlan) else plan_job(dict(config))
    dev = torch.device(device) if device is not None else default_device()
    return _Loop(plan, dev, should_stop or (lambda: False)).run()


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


def _make_optimizer(o: dict[str, Any], params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if o["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"], weight_decay=o["weight_decay"])
    cls = torch.optim.Adam if o["optimizer"] == "adam" else torch.optim.AdamW
    return cls(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])


@contextlib.contextmanager
def _precision(mode: str, device: torch.device) -> Iterator[contextlib.AbstractContextManager[Any]]:
    """Set matmul precision for one job and restore it; yields the autocast context for bf16."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if mode == "tf32" else "highest")
    try:
        if mode == "bf16":
            yield lambda: torch.autocast(device.type, dtype=torch.bfloat16)
        else:
            yield contextlib.nullcontext
    finally:
        torch.set_float32_matmul_precision(previous)


# --- the loop ------------------------------------------------------------------------------

class _Loop:
    """State of one job's run; `run()` is the whole life of the job."""

    def __init__(self, plan: JobPlan, device: torch.device, should_stop: Callable[[], bool]):
        self.plan, self.o, self.device, self.should_stop = plan, plan.options, device, should_stop
        self.metrics: list[tuple[int, str, float]] = []
        self.arrays: list[tuple[str, int, np.ndarray]] = []
        self.pending: list[tuple[int, str, torch.Tensor]] = []  # device scalars awaiting the next host read
        self.tracker = LossTracker(self.o["thresholds"], self.o["ema"])

    # data ---------------------------------------------------------------------------------
    def _factory(self, batch_size: int, seed: int) -> tuple[Callable[[int], tuple[torch.Tensor, torch.Tensor]], torch.Generator]:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        fn = self.plan.batchfn.fn(**self.plan.batchfn_kwargs, batch_size=batch_size, gen=gen, device=self.device)
        return fn, gen

    def _setup_data(self, seeds: dict[str, int]) -> None:
        o = self.o
        self.X_test = self.y_test = self.X_train = self.y_train = None
        if o["n_test"]:
            # Same data seed as training, so whatever the factory draws up front (a teacher) is shared;
            # the samples themselves come from the test stream, which never overlaps training's.
            fn, gen = self._factory(o["n_test"], seeds["data"])
            gen.manual_seed(seeds["test"])
            self.X_test, self.y_test = fn(0)
        if o["online"]:
            self.next_batch, _ = self._factory(o["batch_size"], seeds["data"])
            self.n_classes = getattr(self.next_batch, "n_classes", None)
            return
        fn, _ = self._factory(o["n_train"], seeds["data"])
        self.n_classes = getattr(fn, "n_classes", None)
        self.X_train, self.y_train = fn(0)
        n, bs = o["n_train"], o["batch_size"]
        if bs is None or bs >= n:
            self.next_batch = lambda step: (self.X_train, self.y_train)
            return
        sample_gen = torch.Generator(device=self.device).manual_seed(seeds["sample"])
        per_epoch = n // bs
        perm: list[torch.Tensor] = []

        def next_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            i = step % per_epoch
            if i == 0 or not perm:
                perm[:] = [torch.randperm(n, generator=sample_gen, device=self.device)]
            idx = perm[0][i * bs:(i + 1) * bs]
            return self.X_train[idx], self.y_train[idx]

        self.next_batch = next_batch

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
        if chunk.size:
            self.last_loss = float(chunk[-1])

    # the job ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t0 = time.perf_counter()
        o = self.o
        seeds = derive_seeds(o["seed"])
        with _precision(o["precision"], self.device) as autocast:
            self.autocast = autocast
            self._setup_data(seeds)
            self.model = self._build_model(seeds["model"])
            self.optimizer = _make_optimizer(o, self.model.parameters())
            self.init_params = [p.detach().clone() for p in self.model.parameters()]
            torch.manual_seed(seeds["sample"])  # dropout and other in-model randomness
            status, steps_run = self._train(o["steps"])
            if status != "diverged":
                self._evaluate(steps_run, final=True)
                if self.plan.grabs:
                    self._grab(steps_run, None)
                self._flush([], steps_run)
        return self._result(status, steps_run, time.perf_counter() - t0)

    def _train(self, steps: int) -> tuple[str, int]:
        o, model, opt, loss_fn = self.o, self.model, self.optimizer, LOSSES[self.o["loss"]]
        eval_every, grab_every = o["eval_every"], o["grab_every"]
        losses: list[torch.Tensor] = []
        first = 0
        batch = None
        for step in range(steps):
            if step % eval_every == 0 if eval_every else step == 0:
                self._evaluate(step, final=False)
            if grab_every and step % grab_every == 0 and self.plan.grabs:
                self._grab(step, batch)
            batch = self.next_batch(step)
            with self.autocast():
                loss = loss_fn(model(batch[0]), batch[1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            stop = self.should_stop()
            if len(losses) == CHUNK or step + 1 == steps or stop:
                self._flush(losses, first)
                losses, first = [], step + 1
                if self.tracker.nonfinite_at is not None:
                    return "diverged", step + 1
                if o["stop_on_thresholds"] and self.tracker.all_crossed:
                    return "done", step + 1
                if stop:
                    return "stopped", step + 1
        return "done", steps

    def _result(self, status: str, steps_run: int, wall_s: float) -> TrainResult:
        final = {n: v for s, n, v in self.metrics if s == steps_run and n.endswith(("_loss", "_acc")) and n != "batch_loss"}
        summary: dict[str, Any] = {
            "final_train_loss": finite_or_none(final.get("train_loss")),
            "final_test_loss": finite_or_none(final.get("test_loss")),
            "steps": steps_run,
            "wall_s": round(wall_s, 4),
            "device": str(self.device),
            "host": socket.gethostname(),
            "precision": self.o["precision"],
            **self.tracker.summary(),
        }
        for key in ("train_acc", "test_acc"):
            if key in final:
                summary[f"final_{key}"] = finite_or_none(final[key])
        reason = None
        if status == "diverged":
            summary["diverged_at"] = self.tracker.nonfinite_at
            reason = f"non-finite train loss at step {self.tracker.nonfinite_at}"
        metrics = [m for m in self.metrics if np.isfinite(m[2])]
        return TrainResult(status, summary, metrics, self.arrays, reason)


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
