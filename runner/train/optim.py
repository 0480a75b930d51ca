"""What a step computes with: the losses, accuracy, the optimizer (muP-aware) and the matmul precision."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F

from .options import TrainOptions

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y.reshape(out.shape))


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y.long())


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(-1), y.reshape(-1).to(out.dtype))


LOSSES: dict[str, LossFn] = {"mse": _mse, "cross_entropy": _cross_entropy, "bce": _bce}


def _per_member(per_element: torch.Tensor) -> torch.Tensor:
    """[K, ...] elementwise losses -> each member's mean, as its loss alone takes it: a [K] tensor."""
    return per_element.flatten(1).mean(1)


# The same losses for K stacked members at once (out [K, batch, ...], y [K, batch, ...]): one kernel
# over every member where vmap of the loss above decomposes into many small ones.
MEMBER_LOSSES: dict[str, LossFn] = {
    "mse": lambda out, y: _per_member(F.mse_loss(out, y.reshape(out.shape), reduction="none")),
    "cross_entropy": lambda out, y: F.cross_entropy(out.flatten(0, 1), y.flatten().long(), reduction="none")
    .view(out.shape[0], -1).mean(1),
    "bce": lambda out, y: _per_member(F.binary_cross_entropy_with_logits(
        out.reshape(out.shape[0], -1), y.reshape(y.shape[0], -1).to(out.dtype), reduction="none")),
}


def accuracy(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """The fraction classified right, as a device scalar (None for a regression loss)."""
    if loss == "cross_entropy":
        return (out.argmax(-1) == y.long()).float().mean()
    if loss == "bce":
        return ((out.reshape(-1) > 0) == (y.reshape(-1) > 0.5)).float().mean()
    return None


def make_optimizer(o: TrainOptions | Mapping[str, Any], model: torch.nn.Module, capturable: bool = False
                   ) -> torch.optim.Optimizer:
    """The configured optimizer; its muP version (MuSGD, MuAdam, MuAdamW) for a model with base shapes.
    `capturable` (every CUDA job, captured or not, so both compute alike): Adam keeps its step count
    on the device, so its step can be recorded in a CUDA graph. `o` may be a mapping of option keys
    (the rest at their defaults), as a test or a notebook writes it."""
    if not isinstance(o, TrainOptions):
        o = TrainOptions.from_mapping(o)
    params = list(model.parameters())
    if any(hasattr(p, "infshape") for p in params):
        import mup

        sgd, adam, adamw = mup.MuSGD, mup.MuAdam, mup.MuAdamW
    else:
        sgd, adam, adamw = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
    if o.optimizer == "sgd":
        return sgd(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    cls = adam if o.optimizer == "adam" else adamw
    extra = {"capturable": True} if capturable else {}
    return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, **extra)


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[Callable[[], contextlib.AbstractContextManager[Any]]]:
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
