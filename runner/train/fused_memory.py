"""How many members one fused group can hold in a given amount of device memory (an estimate,
made before the group is built, so a worker can hand back the jobs that would not fit)."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from .data import JobData
from .loop import build_model, job_seeds
from .plan import JobPlan, plan_job


def members_that_fit(configs: Sequence[dict[str, Any] | JobPlan], device: str | torch.device, budget_bytes: float) -> int:
    """How many of these jobs (one fusion key) one fused group can hold in `budget_bytes` of device
    memory, at least 1. Per member: its stacked weights, gradients and optimizer state, the copies it
    keeps (its own module for grabs, its initial weights), its data, and one step's activations
    (measured by hooks on the first member's forward), with a margin of 1.5 for the backward and the
    batched kernels' workspaces. An estimate, measured against the peak on an H200 (benchmarks/fused.py)."""
    plans = [c if isinstance(c, JobPlan) else plan_job(dict(c)) for c in configs]
    plan, dev = plans[0], torch.device(device)
    seeds = job_seeds(plan.options)
    data = JobData(plan, dev, seeds)
    model = build_model(plan, data, dev, seeds["model"])
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    slots = 1 if plan.options.optimizer == "sgd" else 2
    X, _ = data.probe(0)
    sample = X[:8]
    outputs: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel() * out.element_size())
                                     if isinstance(out, torch.Tensor) else None)
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
    per_sample = sum(outputs) / max(len(sample), 1)
    sets = [t for t in (data.X_train, data.y_train, data.X_test, data.y_test) if t is not None]
    batch_bytes = X[: plan.options.batch_size or len(X)].nbytes
    ahead = plan.options.draw_ahead if plan.options.online else 1  # the member's block and the group's stacked copy
    data_bytes = sum(t.numel() * t.element_size() for t in sets) + 2 * ahead * batch_bytes
    rows = max(3 * (plan.options.batch_size or plan.options.n_train or 1), plan.options.n_test, plan.options.n_train or 0)
    per_member = 1.5 * ((4 + slots) * weight_bytes + data_bytes + rows * per_sample)
    return max(1, min(len(plans), int(budget_bytes // per_member)))
