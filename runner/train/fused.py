"""A fused group: jobs of one fusion key trained as one batched model, each still its own job.

Every member keeps what it would have alone: its data (its own JobData, generators seeded from its
own seed, so it sees exactly the batches it would see alone), its initial weights (drawn from its
own seed as alone, then stacked), its learning rate and optimizer scalars, its thresholds and divergence, its evaluations,
grabs and snapshots (run on that member's weights), its checkpoints (runner.train.fused_checkpoints:
the format a job alone writes, so a member resumes fused or alone) and its own TrainResult. A member that diverges
or stops on its thresholds ends at the step it would end alone and is frozen (learning rate 0)
while the others go on. What cannot be fused runs each job alone, and every summary says which:
`fused: K` or `fused: off: <why>`.

Set-up costs per member what it costs alone, which for a thousand tiny members is more than their
training, so what members have in common is made once: twins (members of one seed: a sweep's
learning rates) share one JobData and one set of initial weights, and a member of another seed has
its weights redrawn on the first member's module (the model's `reinitialise()`) instead of building one.

On a GPU the whole fused step is captured as one CUDA graph (runner.train.fused_capture).
"""
from __future__ import annotations

import contextlib
import inspect
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..hashing import canonical_json, config_hash
from . import checkpoints
from .capture import capture_blocker
from .data import Batch, JobData
from .fused_capture import FusedGraph
from .fused_checkpoints import restore_optimizer, restore_parts, save_member
from .fused_data import GroupData
from .fusion import fusion_key
from .grabbing import GrabContext, run_grabs
from .loop import (
    CHUNK,
    RunStatus,
    TrainResult,
    build_model,
    default_device,
    intra_op_threads,
    job_result,
    job_seeds,
    model_kwargs,
    redraw_model,
    train,
)
from .optim import LOSSES, MEMBER_LOSSES, accuracy, precision
from .plan import JobPlan, plan_job
from .records import Records
from .schedule import LrPlan, every
from .stacked import StackedModel, StackedOptimizer, Weights, fusion_blocker, summed_loss_backward, weights_of
from .thresholds import LossTracker, crossings_since


def train_group(configs: Sequence[dict[str, Any] | JobPlan], *, device: str | torch.device | None = None,
                should_stop: Callable[[], bool] | None = None,
                checkpoint_paths: Sequence[str | Path | None] | None = None, threads: int | None = 1,
                seal: checkpoints.Seal | None = None,
                initial_weights: Sequence[Mapping[str, Any] | None] | None = None) -> list[TrainResult]:
    """Train jobs of one fusion key as one batched model; their results in the order given. Where
    they cannot be fused, each is trained alone (`fused: off: <why>` in its summary).

    With `checkpoint_paths` (one per job, as `train` takes one), members resume from their
    checkpoints, save one every `checkpoint_every` steps and when `should_stop` ends the group. A
    member whose checkpoint is at another step than most of the group's resumes alone. `threads` and
    `seal`: as `train` takes them (one seal for all the members' files: a save point records them at once);
    `initial_weights`: one per job, as `train` takes them."""
    with intra_op_threads(threads):
        return _train_group(configs, device, should_stop, checkpoint_paths, seal,
                            list(initial_weights) if initial_weights is not None else [None] * len(configs))


def _train_group(configs: Sequence[dict[str, Any] | JobPlan], device: str | torch.device | None,
                 should_stop: Callable[[], bool] | None,
                 checkpoint_paths: Sequence[str | Path | None] | None, seal: checkpoints.Seal | None,
                 weights: list[Mapping[str, Any] | None]) -> list[TrainResult]:
    plans = [c if isinstance(c, JobPlan) else plan_job(dict(c)) for c in configs]
    _check_one_key(plans)
    dev = torch.device(device) if device is not None else default_device()
    stop = should_stop or (lambda: False)
    started = time.perf_counter()
    paths = [None if p is None else Path(p) for p in (checkpoint_paths or [None] * len(plans))]
    saved = [None if path is None else checkpoints.load(path, config_hash(plan.config), seal)
             for plan, path in zip(plans, paths)]
    steps = [0 if state is None else int(state["step"]) for state in saved]
    start = Counter(steps).most_common(1)[0][0]
    results: list[TrainResult | None] = [None] * len(plans)
    for i, step in enumerate(steps):
        if step != start:
            results[i] = _alone(plans[i], dev, stop, f"resumed alone from its checkpoint at step {step}", paths[i], seal,
                                weights[i])
    together = [i for i, step in enumerate(steps) if step == start]
    if len(together) > 1:
        with precision(plans[0].options.precision, dev) as autocast:
            group = _Group([plans[i] for i in together], dev, autocast, stop, started,
                           saved=[saved[i] for i in together], paths=[paths[i] for i in together], seal=seal,
                           weights=[weights[i] for i in together])
            if group.blocker is None:
                for i, result in zip(together, group.run()):
                    results[i] = result
                return results  # type: ignore[return-value]
        why = group.blocker
    else:
        why = "no other job of its key to fuse with"
    for i in together:
        results[i] = _alone(plans[i], dev, stop, why, paths[i], seal, weights[i])
    return results  # type: ignore[return-value]


def _check_one_key(plans: Sequence[JobPlan]) -> None:
    """The caller (the claim) groups by fusion key; a group of several keys is a bug, not a fallback."""
    if len({fusion_key("", plan.config) for plan in plans}) > 1:
        raise ValueError("a fused group holds jobs of one fusion key only")


def _twin_key(plan: JobPlan, seeds: Mapping[str, int]) -> tuple[Any, ...]:
    """What fixes a fresh member's data and initial weights besides its fusion key (which the group
    shares): its seeds and the batch function's values. Members of one twin key (a sweep's learning
    rates at one seed) get the very same data and weights, so the group builds and draws them once."""
    return tuple(sorted(seeds.items())), canonical_json(plan.batchfn_kwargs)


def _alone(plan: JobPlan, device: torch.device, should_stop: Callable[[], bool], why: str,
           checkpoint_path: Path | None, seal: checkpoints.Seal | None, weights: Mapping[str, Any] | None) -> TrainResult:
    result = train(plan, device=device, should_stop=should_stop, checkpoint_path=checkpoint_path, threads=None,
                   seal=seal, initial_weights=weights)
    result.summary["fused"] = f"off: {why}"
    return result


class _Template:
    """The first fresh member's module, redrawn in place for each fresh member after it whose model
    takes the same arguments: its weights drawn as building its own would draw them (redraw_model),
    without building a module per member."""

    def __init__(self, module: torch.nn.Module, kwargs: dict[str, Any]):
        self.module, self.kwargs = module, kwargs
        self.named = list(module.named_parameters()), list(module.named_buffers())  # the same tensors every redraw

    def redraw(self, seed: int) -> bool:
        """The module's weights drawn as building it with `seed` would (False: it cannot be redrawn)."""
        return redraw_model(self.module, seed)

    def weights(self) -> Weights:
        return weights_of(*self.named)


@dataclass(eq=False)  # compared by identity: its fields hold tensors
class _Member:
    """One job of the group: everything it would have alone but its weights (those are stacked)."""

    index: int                            # its place in the stack
    plan: JobPlan
    data: JobData
    tracker: LossTracker
    records: Records
    lr_plan: LrPlan
    init_params: list[torch.Tensor]
    path: Path | None = None              # its checkpoint file
    batch: Batch | None = None            # its batch of the step before a resume (after it: the group's)
    status: RunStatus | None = None       # set when it ends
    steps_run: int = 0
    wall_s: float = 0.0
    wall_before: float = 0.0              # seconds it trained before a resume
    resumed_from: int | None = None
    checkpoint_error: str | None = None   # its last checkpoint write that failed

    @property
    def active(self) -> bool:
        return self.status is None

    def initial(self, device: torch.device) -> list[torch.Tensor]:
        """Its initial weights on the device (kept on the CPU until a grab asks: dist_from_init)."""
        if self.init_params and self.init_params[0].device != device:
            self.init_params = [p.to(device) for p in self.init_params]
        return self.init_params


class _Group:
    """The run of one fused group: `__init__` builds the members and the stack, `run()` trains."""

    def __init__(self, plans: Sequence[JobPlan], device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager[Any]], should_stop: Callable[[], bool],
                 started: float, saved: Sequence[dict[str, Any] | None], paths: Sequence[Path | None],
                 seal: checkpoints.Seal | None = None, weights: Sequence[Mapping[str, Any] | None] | None = None):
        self.o, self.device, self.autocast, self.should_stop = plans[0].options, device, autocast, should_stop
        self.started, self.seal = started, seal
        self.loss_fn = LOSSES[self.o.loss]
        self.members: list[_Member] = []
        modules, stack = self._build_members(plans, device, saved, paths, weights or [None] * len(plans))
        self.start = self.members[0].resumed_from or 0  # the caller groups members resuming at one step
        self.blocker = fusion_blocker(modules[0], stack) or self._plugin_blocker() or self._data_blocker()
        self.stacked: StackedModel | None = None
        self.optimizer: StackedOptimizer | None = None
        self.grads: dict[str, torch.Tensor] | None = None  # the last step's, per stacked parameter
        self.saves = any(path is not None for path in paths)
        if self.blocker is None:
            self.stacked = StackedModel(modules, stack, device)
            self.optimizer = StackedOptimizer(self.stacked.params, [m.plan.options for m in self.members])
            restore_optimizer(self, list(saved))
            self.blocker = self._trial_forward()
        why_not = capture_blocker(self.o, device, lr_is_a_tensor=True)
        self.capture_note = f"off: {why_not}" if why_not else ""
        self.data = GroupData([m.data for m in self.members])
        self.last_batch: Batch | None = None  # the last step's stacked batch: member i's is (X[i], y[i])
        self.graph = FusedGraph(self._compute, self.data, device) if not why_not else None
        self.current_step = 0
        # evaluations awaiting the next host read: (step, name, [K] values on the device, the members they are for)
        self.pending: list[tuple[int, str, torch.Tensor, list[int]]] = []
        self.setup_s = time.perf_counter() - started

    def _build_members(self, plans: Sequence[JobPlan], device: torch.device, saved: Sequence[dict[str, Any] | None],
                       paths: Sequence[Path | None], initials: Sequence[Mapping[str, Any] | None],
                       ) -> tuple[list[torch.nn.Module | None], list[Weights]]:
        """Every member as alone: its data, its initial weights (and its checkpoint's parts, resumed).
        Twins (one seed) share one data and one set of weights; a fresh member of another seed has
        its weights redrawn on the first fresh member's module. Returns the members' modules (None:
        none of its own) and weights, in order."""
        modules: list[torch.nn.Module | None] = []
        stack: list[Weights] = []
        twins: dict[tuple[Any, ...], tuple[JobData, Weights, list[torch.Tensor]]] = {}
        template: _Template | None = None
        for plan, state, path, initial in zip(plans, saved, paths, initials):
            seeds = job_seeds(plan.options)
            fresh = state is None and initial is None
            key = _twin_key(plan, seeds) if fresh else None
            module = None
            if key in twins:  # the same data and initial weights as a member before it: built once
                data, weights, init_params = twins[key]
            else:
                data = JobData(plan, device, seeds)
                kwargs = model_kwargs(plan, data, seeds["model"])
                if fresh and template is not None and template.kwargs == kwargs and template.redraw(seeds["model"]):
                    weights = template.weights()
                else:  # built on the CPU: moved as one stack
                    module = build_model(plan, data, torch.device("cpu"), seeds["model"], initial, kwargs)
                    weights = weights_of(module.named_parameters(), module.named_buffers())
                    if fresh and template is None:
                        template = _Template(module, kwargs)
                init_params = list(weights[0].values())
                if key is not None:
                    twins[key] = data, weights, init_params
            member = _Member(len(self.members), plan, data, LossTracker(plan.options.thresholds, plan.options.ema),
                             Records(plan.options.eval_every), LrPlan(plan.options), init_params, path)
            if state is not None and module is not None:  # resumed (so built): its checkpoint back, part by part
                restore_parts(member, module, state)
                weights = weights_of(module.named_parameters(), module.named_buffers())
                member.resumed_from = int(state["step"])
            modules.append(module)
            stack.append(weights)
            self.members.append(member)
        return modules, stack

    # what cannot be fused -----------------------------------------------------------------------
    def _plugin_blocker(self) -> str | None:
        for plugin, _ in self.members[0].plan.grabs:
            if "optimizer" in inspect.signature(plugin.fn).parameters:
                return f"grab {plugin.ref} reads the optimizer, which a fused member has no torch.optim of"
        return None

    def _probes(self) -> list[Batch]:
        """Each member's probe batch (JobData.probe), drawn once for members that share their data."""
        probes: dict[int, Batch] = {}
        for m in self.members:
            if id(m.data) not in probes:
                probes[id(m.data)] = m.data.probe(0)
        return [probes[id(m.data)] for m in self.members]

    def _data_blocker(self) -> str | None:
        shapes = {(tuple(X.shape), tuple(y.shape)) for X, y in self._probes()}
        return None if len(shapes) == 1 else f"the members' data differ in shape ({sorted(shapes)[:2]})"

    def _trial_forward(self) -> str | None:
        X = torch.stack([X[:2] for X, _ in self._probes()])
        try:
            with torch.no_grad(), self.autocast():
                self.stacked(X)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - whatever vmap refuses: run the jobs alone
            return f"the model cannot run under vmap ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        return None

    # the run ------------------------------------------------------------------------------------
    def run(self) -> list[TrainResult]:
        o, members = self.o, self.members
        change_steps = {c.at for c in o.changes if c.batch_size is not None}
        snapshot_steps = o.snapshot_steps()
        lr_steps, lr_every_step = members[0].lr_plan.steps, members[0].lr_plan.every_step  # in the key: shared
        save_every = o.checkpoint_every if self.saves else 0
        losses: list[torch.Tensor] = []  # this chunk's [K] losses, still on the device
        first = self.start
        if self.start:
            self._set_lr(self.start)  # a resume: each member's lr where it stopped
        active = [m for m in members if m.active]  # changes only when members end, after a host read
        # at_thresholds and stop_on_thresholds go back to a crossing inside the chunk just read: keep its start
        rewinds = any(m.plan.options.thresholds and (m.plan.options.at_thresholds or m.plan.options.stop_on_thresholds)
                      for m in members)
        mark = self._mark(self.start) if rewinds else None
        for step in range(self.start, o.steps):
            if step in change_steps:
                for d in self.data.unique:  # every member's stream, as the graph draws for all
                    d.apply_changes(step)
                if self.graph is not None:
                    self.graph.reset()  # the graph holds the old batch size
            if lr_every_step or step in lr_steps:
                self._set_lr(step)
            if every(o.eval_every, step) or step == 0:
                self._evaluate(step, active, final=False)
            if step in snapshot_steps:
                self._snapshot(step, active)
            if every(o.grab_every, step) and members[0].plan.grabs:
                self._grab(step, active)
            losses.append(self._step(step))
            stop = self.should_stop()
            save = every(save_every, step + 1) and step + 1 < o.steps
            if len(losses) == CHUNK or step + 1 == o.steps or stop or save:
                self._flush(losses, first)  # the one CPU-GPU sync of a chunk, for every member at once
                if mark is not None:
                    self._at_crossings(mark, first, step + 1)
                losses, first = [], step + 1
                self._end_finished(step + 1)
                active = [m for m in members if m.active]
                if not active:
                    break
                if stop or save:
                    self._save(step + 1)
                if stop:
                    self._end([m for m in members if m.active], RunStatus.STOPPED, step + 1)
                    break
                if mark is not None:
                    mark = self._mark(step + 1)
        self._end([m for m in members if m.active], RunStatus.DONE, o.steps)
        self._flush([], first)
        capture = self.graph.describe() if self.graph is not None else self.capture_note
        return [job_result(m.status, m.steps_run, m.wall_s, setup_s=self.setup_s, device=self.device,  # type: ignore[arg-type]
                           options=m.plan.options, tracker=m.tracker, records=m.records, step_capture=capture,
                           resumed_from=m.resumed_from, extra={"fused": len(members)} | (
                               {"checkpoint_error": m.checkpoint_error} if m.checkpoint_error else {}))
                for m in members]

    def _step(self, step: int) -> torch.Tensor:
        """One step of every member on its own batch (replayed as a graph once captured). Returns the
        [K] losses, left on the device."""
        self.current_step = step
        if self.graph is not None:
            losses, self.grads, self.last_batch = self.graph.step(lambda: self.data.next(step))
        else:
            losses, self.grads, self.last_batch = self._compute(self.data.next(step))
        return losses

    def _batch_of(self, m: _Member) -> Batch | None:
        """Member m's batch of the last step (a frozen member keeps drawing: its results are final)."""
        if self.last_batch is None:
            return m.batch
        return self.last_batch[0][m.index], self.last_batch[1][m.index]

    def _compute(self, batch: Batch | None) -> tuple[torch.Tensor, dict[str, torch.Tensor], Batch]:
        """The fused step itself: the stacked batch (drawn here when None: inside a graph), one
        batched forward, one backward of the summed loss, one optimizer step."""
        X, y = batch if batch is not None else self.data.next(self.current_step)
        with self.autocast():
            losses = self.stacked.losses(MEMBER_LOSSES[self.o.loss], X, y)  # type: ignore[union-attr]
        grads = summed_loss_backward(self.stacked, losses)  # type: ignore[arg-type]
        self.optimizer.step(list(grads.values()))  # type: ignore[union-attr]
        return losses.detach(), grads, (X, y)

    def _set_lr(self, step: int) -> None:
        """Each member's learning rate at this step; 0 for the members that ended."""
        self.optimizer.set_lr([m.lr_plan.lr(step) if m.active else 0.0 for m in self.members])  # type: ignore[union-attr]

    # measurements -------------------------------------------------------------------------------
    def _evaluate(self, step: int, members: Sequence[_Member], final: bool) -> None:
        """Test (and offline: train) loss and accuracy of these members, as each would measure alone."""
        if not members:
            return
        o, stacked = self.o, self.stacked
        if members[0].lr_plan.varies and not final:
            for m in members:
                m.records.metric(step, "lr", m.lr_plan.lr(step))
        sets: list[tuple[str, Batch | None]] = [("test", self.data.test_set())]  # stacked once, read every time
        if self.members[0].data.X_train is not None:
            sets.append(("train", self.data.train_set()))
        elif final:  # online: a fresh batch at the end, drawn from each ending member's stream
            drawn = self._final_batches(step, members)
            filler = next(iter(drawn.values()))  # the others' rows are computed, not read (none yet at step 0)
            batches = [drawn.get(m.index) or self._batch_of(m) or filler for m in self.members]
            sets.append(("train", (torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches]))))
        stacked.train(False)  # type: ignore[union-attr]
        with torch.no_grad(), self.autocast():
            for name, data in sets:
                if data is None:
                    continue
                X, y = data
                out = stacked(X)  # type: ignore[misc]
                loss = MEMBER_LOSSES[o.loss](out, y).float()
                acc = torch.func.vmap(lambda a, b: accuracy(o.loss, a, b))(out, y) if o.loss != "mse" else None
                chosen = [m.index for m in members]  # read with the next host read, for the group at once
                self.pending.append((step, f"{name}_loss", loss, chosen))
                if acc is not None:
                    self.pending.append((step, f"{name}_acc", acc, chosen))
        stacked.train(True)  # type: ignore[union-attr]

    def _final_batches(self, step: int, members: Sequence[_Member]) -> dict[int, Batch]:
        """Online, ending members: the next batch of each one's stream, as alone it draws one at its end.
        Members sharing a JobData draw it once (alone, each would draw this very batch). A member that
        ends before its twins ends inside _at_crossings, whose rewind sets the shared stream back."""
        by_data: dict[int, Batch] = {}
        for m in members:
            if id(m.data) not in by_data:
                by_data[id(m.data)] = m.data.next_batch(step)
        return {m.index: by_data[id(m.data)] for m in members}

    def _grab(self, step: int, members: Sequence[_Member]) -> None:
        """Each member's grabs on that member's weights (and its last gradients), as alone."""
        for m in members:
            module = self.stacked.member(m.index, self.grads)  # type: ignore[union-attr]
            ctx = GrabContext(model=module, step=step, X_train=m.data.X_train, y_train=m.data.y_train,
                              X_test=m.data.X_test, y_test=m.data.y_test, optimizer=None,  # type: ignore[arg-type]
                              init_params=m.initial(self.device), config=m.plan.config, loss_fn=self.loss_fn,
                              batch=self._batch_of(m))
            run_grabs(m.plan.grabs, ctx, m.records.record)

    def _snapshot(self, step: int, members: Sequence[_Member]) -> None:
        for m in members:
            m.records.weights(step, self.stacked.member(m.index))  # type: ignore[union-attr]

    # ends ---------------------------------------------------------------------------------------
    def _end_finished(self, steps_run: int) -> None:
        """After a host read: members whose loss went non-finite end diverged at this step, as they
        would alone (those that stop on their thresholds ended at their crossing: _at_crossings)."""
        self._end([m for m in self.members if m.active and m.tracker.nonfinite_at is not None], RunStatus.DIVERGED,
                  steps_run)

    # going back to a threshold's crossing ---------------------------------------------------------
    def _mark(self, step: int) -> dict[str, Any]:
        """What `_rewind` needs to go back to `step` (taken after a host read): copies of the stacked
        weights, optimizer state, last gradients and batch; every member's data position; the RNGs."""
        self.data.sync()
        opt = self.optimizer
        return {"step": step, "params": {k: v.detach().clone() for k, v in self.stacked.params.items()},  # type: ignore[union-attr]
                "slots": [{n: t.clone() for n, t in slot.items()} for slot in opt.state],  # type: ignore[union-attr]
                "adam_steps": opt.steps.clone(),  # type: ignore[union-attr]
                "grads": None if self.grads is None else {k: v.clone() for k, v in self.grads.items()},
                "batch": None if self.last_batch is None else tuple(t.clone() for t in self.last_batch),
                "data": [(d, d.mark()) for d in self.data.unique],
                "group_data": (self.data.block, self.data.perms),
                "rng": {"cpu": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}}

    def _rewind(self, mark: dict[str, Any]) -> None:
        """Back to a mark, in place (the step graph is dropped: it is captured again)."""
        if self.graph is not None:
            self.graph.reset()  # before the members' generators it holds are set back
        opt = self.optimizer
        with torch.no_grad():
            for k, v in self.stacked.params.items():  # type: ignore[union-attr]
                v.copy_(mark["params"][k])
            for slot, saved in zip(opt.state, mark["slots"]):  # type: ignore[union-attr]
                for name in list(slot):
                    if name not in saved:
                        del slot[name]  # made after the mark: the first step makes it again
                slot.update({name: t.clone() for name, t in saved.items()})
            opt.steps.copy_(mark["adam_steps"])  # type: ignore[union-attr]
        self.grads = None if mark["grads"] is None else {k: v.clone() for k, v in mark["grads"].items()}
        self.last_batch = None if mark["batch"] is None else tuple(t.clone() for t in mark["batch"])  # type: ignore[assignment]
        for data, data_mark in mark["data"]:
            data.rewind(data_mark, fresh_stream=False)
        self.data.block, self.data.perms = mark["group_data"]
        self.data.behind = False
        torch.set_rng_state(mark["rng"]["cpu"])
        if mark["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(mark["rng"]["cuda"], self.device)

    def _replay(self, start: int, end: int) -> None:
        """Steps start .. end - 1 of the group again, as run() ran them (captured again on a GPU)."""
        o = self.o
        change_steps = {c.at for c in o.changes if c.batch_size is not None}
        lr_plan = self.members[0].lr_plan
        for step in range(start, end):
            if step in change_steps:
                for d in self.data.unique:
                    d.apply_changes(step)
                if self.graph is not None:
                    self.graph.reset()
            if lr_plan.every_step or step in lr_plan.steps:
                self._set_lr(step)
            self._step(step)  # captured again on a GPU: the members' draws inside the graph

    def _at_crossings(self, mark: dict[str, Any], first: int, now: int) -> None:
        """The chunk first .. now - 1 just read: members that crossed a threshold in it and measure
        there (at_thresholds) or stop there (stop_on_thresholds, the last one) are taken back to each
        such step by replaying the chunk from its start, measured or ended there, and the group comes
        back to step `now` as it was (members that ended stay frozen)."""
        events: dict[int, tuple[list[_Member], list[_Member]]] = {}  # step -> (measure, end)
        for m in self.members:
            if not m.active:
                continue
            o = m.plan.options
            crossed, last = crossings_since(m.tracker, first)
            ends_at = last if o.stop_on_thresholds and last is not None and (
                m.tracker.nonfinite_at is None or last < m.tracker.nonfinite_at) else None
            if o.at_thresholds:
                for s in crossed:
                    if ends_at is None or s < ends_at:
                        events.setdefault(s, ([], []))[0].append(m)
            if ends_at is not None:
                events.setdefault(ends_at, ([], []))[1].append(m)
        if not events:
            return
        back = self._mark(now)
        self._rewind(mark)
        at = mark["step"]
        for step in sorted(events):
            self._replay(at, step)
            at = step
            measure, ending = events[step]
            self._measure_at(step, [m for m in measure if m.active])
            for m in ending:
                m.tracker.nonfinite_at = None  # (a later step's, which it never reaches now)
                m.records.end_at(step)
            self._end(ending, RunStatus.DONE, step)
        self._rewind(back)
        self._set_lr(now)  # the members that ended stay frozen

    def _measure_at(self, step: int, members: Sequence[_Member]) -> None:
        """at_thresholds: the evaluation and grabs these members asked for at a crossing step, where
        their cadence does not measure anyway."""
        evaluate = [m for m in members if "eval" in m.plan.options.at_thresholds]
        if evaluate and not (every(self.o.eval_every, step) or step == 0):
            self._evaluate(step, evaluate, final=False)
        grab = [m for m in members if "grabs" in m.plan.options.at_thresholds]
        if grab and self.members[0].plan.grabs and not every(self.o.grab_every, step):
            self._grab(step, grab)

    def _end(self, ending: Sequence[_Member], status: RunStatus, steps_run: int) -> None:
        """End these members at one step: their final evaluation (one for them all), grabs and
        snapshots when done, then freeze them (learning rate 0)."""
        if not ending:
            return
        self.data.sync()
        for m in ending:
            m.status, m.steps_run = status, steps_run
        if status == RunStatus.DONE:
            self._evaluate(steps_run, ending, final=True)
            if ending[0].plan.grabs:
                self._grab(steps_run, ending)
            self._snapshot(steps_run, [m for m in ending if m.plan.options.snapshot_at_end(steps_run)])  # as alone
        wall = time.perf_counter() - self.started
        for m in ending:
            m.wall_s = m.wall_before + wall
        self._set_lr(steps_run)

    def _save(self, step: int) -> None:
        """A checkpoint of every member still training, each in its own file."""
        self.data.sync()
        for m in self.members:
            if m.active and m.path is not None:
                save_member(self, m, step, m.path)
        if self.seal is not None:
            self.seal.flush()  # every member's digest in one write

    def _flush(self, losses: list[torch.Tensor], first: int) -> None:
        """One host read for the whole group: the chunk's losses of every member and every value
        awaiting the read; each active member's tracker and records take their part."""
        pending, self.pending = self.pending, []
        parts = [torch.stack(losses).float().reshape(-1)] if losses else []
        parts += [values.float().reshape(-1) for _, _, values, _ in pending]
        read = torch.cat(parts).cpu().numpy() if parts else np.zeros(0)  # a CPU-GPU sync point
        n, k = len(losses), len(self.members)
        chunk, none = read[: n * k].reshape(n, k), np.zeros(0)
        for i, m in enumerate(self.members):
            mine = chunk[:, i] if m.active else none
            m.records.absorb(mine, first, none)
            if m.active:
                m.tracker.update(mine, first)
        for j, (step, name, _, chosen) in enumerate(pending):  # evaluations: [K] values each
            row = read[n * k + j * k: n * k + (j + 1) * k].tolist()
            for i in chosen:
                self.members[i].records.metric(step, name, row[i])

