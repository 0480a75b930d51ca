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


def skip_dynamo_import() -> int:
    """Spare a worker the import of torch._dynamo (2-3 s) that torch.optim triggers on its first call.

    torch.optim wraps Optimizer methods (add_param_group, zero_grad, state_dict...) in
    torch._disable_dynamo, whose wrapper imports torch._dynamo on its first call to build, once, the
    function it then calls: outside torch.compile, the method itself. runner never compiles, so each
    wrapper is handed its method as that cached function: the same code runs, and the import never
    happens. For worker processes only (a notebook may compile); returns how many wrappers it primed."""
    import sys

    if "torch._dynamo" in sys.modules:
        return 0
    try:
        from torch._compile import _disable_dynamo

        wrapper_code = _disable_dynamo(lambda: None).__code__
    except (ImportError, AttributeError):  # another torch: leave it as it is
        return 0
    primed = 0
    for cls in {torch.optim.Optimizer, *(c for c in vars(torch.optim).values()
                                         if isinstance(c, type) and issubclass(c, torch.optim.Optimizer))}:
        for attr in vars(cls).values():
            fn = getattr(attr, "__wrapped__", None)
            if getattr(attr, "__code__", None) is wrapper_code and fn is not None \
                    and getattr(fn, "__dynamo_disable", None) is None:
                fn.__dynamo_disable = fn  # what the wrapper caches; it calls this from now on
                primed += 1
    return primed


def direct_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """`optimizer.step()` without torch.optim's two wrappers, for the loop to call every step: the
    profiler-and-hooks wrapper (runner sets no optimizer hooks) and `_use_grad_for_differentiable`,
    which imports torch._dynamo (2-3 s) at the first step only to place a graph break that matters
    under torch.compile alone. The same update runs, under no_grad as the wrapper sets it. Where a
    hook is set or the optimizer is differentiable, the plain `optimizer.step`."""
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

    hooked = (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
              or _global_optimizer_pre_hooks or _global_optimizer_post_hooks)
    step = type(optimizer).step
    if hooked or optimizer.defaults.get("differentiable") or not hasattr(step, "__wrapped__"):
        return optimizer.step
    while hasattr(step, "__wrapped__"):
        step = step.__wrapped__

    def run_step() -> Any:
        with torch.no_grad():
            return step(optimizer)

    return run_step
