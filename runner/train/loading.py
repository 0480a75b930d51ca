"""A job's model rebuilt with stored weights: the architecture from its config (the same plug-in, the
same d_in and d_out from its data), the parameters from its `weights.<name>` snapshot arrays."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from .data import JobData
from .loop import build_model, job_seeds
from .plan import plan_job


def model_with_weights(config: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                       device: str | torch.device = "cpu") -> torch.nn.Module:
    """The config's model (built as its job built it) holding `weights` (parameter name -> array), in
    eval mode. UserError when the arrays do not fit the model (another architecture, missing names)."""
    model = model_of(config, device)
    load_weights(model, weights)
    return model.eval()


def model_of(config: Mapping[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The config's model as its job builds it, before any weights it starts from (init_from) are loaded."""
    return model_and_data(config, device)[0]


def model_and_data(config: Mapping[str, Any], device: str | torch.device = "cpu") -> tuple[torch.nn.Module, JobData]:
    """The config's model (before init_from's weights) and its job's data: the test set, the training
    set or stream it had, drawn from the same seeds."""
    plan = plan_job({k: v for k, v in config.items() if k != "init_from"})
    dev = torch.device(device)
    seeds = job_seeds(plan.options)
    data = JobData(plan, dev, seeds)
    return build_model(plan, data, dev, seeds["model"]), data


def load_weights(model: torch.nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Copy stored weights into a model's parameters; UserError when they do not fit it."""
    misfit = weights_misfit(model, {name: tuple(np.shape(a)) for name, a in weights.items()})
    if misfit:
        raise UserError(misfit)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.as_tensor(np.asarray(weights[name])).to(dtype=p.dtype, device=p.device))


def weights_misfit(model: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why weights of these parameter shapes do not fit the model (one line), or None when they do."""
    params = dict(model.named_parameters())
    missing, extra = sorted(set(params) - set(shapes)), sorted(set(shapes) - set(params))
    if missing or extra:
        return (f"the stored weights do not fit the model of this config (missing {missing[:3]}, "
                f"unexpected {extra[:3]}): was it trained with another model?")
    for name, p in params.items():
        if tuple(shapes[name]) != tuple(p.shape):
            return f"stored weights.{name} has shape {tuple(shapes[name])}, the model's is {tuple(p.shape)}"
    return None
