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
    plan = plan_job(dict(config))
    dev = torch.device(device)
    seeds = job_seeds(plan.options)
    model = build_model(plan, JobData(plan, dev, seeds), dev, seeds["model"])
    params = dict(model.named_parameters())
    missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or extra:
        raise UserError(f"the stored weights do not fit the model of this config (missing {missing[:3]}, "
                        f"unexpected {extra[:3]}): was it trained with another model?")
    with torch.no_grad():
        for name, p in params.items():
            value = torch.as_tensor(np.asarray(weights[name]))
            if tuple(value.shape) != tuple(p.shape):
                raise UserError(f"stored weights.{name} has shape {tuple(value.shape)}, the model's is {tuple(p.shape)}")
            p.copy_(value.to(dtype=p.dtype, device=p.device))
    return model.eval()
