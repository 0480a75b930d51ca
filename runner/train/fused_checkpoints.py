"""Checkpoints of fused members, in the very format a job alone writes (runner.train.checkpoints).

A member's checkpoint holds its own weights, its own slice of the stacked optimizer's state written
as the torch.optim state dict its job alone would have, its data stream, records and tracker. So a
member stopped in a group resumes in a group or alone, and a job stopped alone resumes in a group:
the file does not say how it was trained.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..hashing import config_hash
from . import checkpoints
from .optim import make_optimizer

if TYPE_CHECKING:  # the group imports this module
    from .fused import _Group, _Member

# The stacked optimizer's state names, by the torch.optim state key each is saved as.
_SLOTS = {"sgd": {"momentum": "momentum_buffer"}, "adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}}


def save_member(group: _Group, m: _Member, step: int, path: Path) -> None:
    """Write member `m`'s checkpoint at `step` (its weights and optimizer slice as a job alone saves them)."""
    module = group.stacked.member(m.index, group.grads)  # type: ignore[union-attr]
    o = m.plan.options
    optimizer = make_optimizer(o, module, capturable=group.device.type == "cuda")
    for pg in optimizer.param_groups:  # the lr in effect for the step before `step`, as alone it would be
        pg["lr"] = m.lr_plan.lr(max(step - 1, 0))
    stacked_opt = group.optimizer
    slots = _SLOTS["sgd" if o.optimizer == "sgd" else "adam"]
    for p, state in zip(module.parameters(), stacked_opt.state):  # type: ignore[union-attr]
        saved = {torch_name: state[name][m.index].clone() for name, torch_name in slots.items() if name in state}
        if o.optimizer != "sgd" and saved:
            saved["step"] = stacked_opt.steps.detach().clone().to(p.device)  # capturable Adam: on the device
        if saved:
            optimizer.state[p] = saved
    state = checkpoints.job_state(
        config_hash=config_hash(m.plan.config), step=step, wall_s=m.wall_before + time.perf_counter() - group.started,
        model=module, optimizer=optimizer, device=group.device, data=m.data, batch=group._batch_of(m),
        tracker=m.tracker, records=m.records)
    m.checkpoint_error = checkpoints.try_save(path, state, group.seal) or m.checkpoint_error  # a warning, never the end


def restore_parts(m: _Member, model: torch.nn.Module, saved: dict[str, Any]) -> None:
    """What of a checkpoint goes back before the stack is built: data, weights, records, tracker."""
    step = int(saved["step"])
    m.data.restore(saved["data"], step)
    model.load_state_dict(saved["model"])
    m.tracker.restore(saved["tracker"])
    m.records.restore(saved["records"])
    m.batch = None if saved["batch"] is None else tuple(t.to(m.data.device) for t in saved["batch"])  # type: ignore[assignment]
    m.wall_before = float(saved["wall_s"])


def restore_optimizer(group: _Group, saved: list[dict[str, Any] | None]) -> None:
    """Each resumed member's torch.optim state into its slice of the stacked optimizer's state, and
    the last step's gradients (a grab at the resume step reads them)."""
    stacked_opt = group.optimizer
    kind = "sgd" if group.o.optimizer == "sgd" else "adam"
    for i, state in enumerate(saved):
        if state is None:
            continue
        per_param = state["optimizer"]["state"]
        for j, (p, slot) in enumerate(zip(stacked_opt.params, stacked_opt.state)):  # type: ignore[union-attr]
            mine = per_param.get(j, {})
            for name, torch_name in _SLOTS[kind].items():
                if mine.get(torch_name) is not None:
                    slot.setdefault(name, torch.zeros_like(p))[i].copy_(mine[torch_name])
            if kind == "adam" and "step" in mine:  # members of a group run in lockstep: one step count
                stacked_opt.steps.fill_(float(mine["step"]))  # type: ignore[union-attr]
    grads = [s["grads"] for s in saved if s is not None]
    if grads and len(grads) == len(saved) and all(g is not None for gs in grads for g in gs):
        names = list(group.stacked.params)  # type: ignore[union-attr]
        group.grads = {name: torch.stack([gs[j] for gs in grads]).to(group.device) for j, name in enumerate(names)}
