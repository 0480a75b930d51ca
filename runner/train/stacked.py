"""K same-shape models as one: parameters stacked along a leading member axis, a forward that runs
every member on its own batch in one call, and an optimizer whose scalars are per member.

`torch.func.stack_module_state` + `functional_call` + `vmap` run any `nn.Module` whose forward has
no data-dependent Python control flow: the matmuls become batched ones, so K small models cost about
what one costs on a GPU that a single small model leaves idle. Each member starts from the weights
it would get alone (built by the caller, seed by seed), and its gradient depends on its own loss
only: the summed loss's backward hands each member the gradient of its own loss.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from .optim import LossFn
from .options import TrainOptions

Weights = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]  # a member's parameters and buffers, by name


def weights_of(named_parameters: Iterable[tuple[str, torch.Tensor]],
               named_buffers: Iterable[tuple[str, torch.Tensor]]) -> Weights:
    """Copies of a module's parameters and buffers as they are now (a module redrawn for the next
    member keeps its tensors: pass its named lists once, copy them per member)."""
    return {n: p.detach().clone() for n, p in named_parameters}, {n: b.clone() for n, b in named_buffers}


def fusion_blocker(first: nn.Module, weights: Sequence[Weights]) -> str | None:
    """Why these members cannot train as one (None: they can): the first member's module, every
    member's weights. Checked before anything runs."""
    if any(hasattr(p, "infshape") for p in first.parameters()):
        return "muP's readout reads its weights' base shapes, which stacked parameters do not carry"
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in first.modules()):
        return "dropout draws from the global random stream, which fused members would share"
    shapes = [{n: t.shape for n, t in part.items()} for part in weights[0]]
    for w in weights[1:]:
        if w is not weights[0] and any(len(part) != len(s) or any(s.get(n) != t.shape for n, t in part.items())
                                       for part, s in zip(w, shapes)):
            return "the members' parameters differ in shape"
    return None


class StackedModel:
    """The members' parameters and buffers stacked ([K, ...] each) on `device`, run through one
    stateless copy. The member modules may live on the CPU (a group builds them there: a thousand
    small host-to-device copies cost more than building the models); one moves to `device` when a
    grab or a snapshot first asks for it. A member without a module of its own (None: a twin, or
    one whose weights were redrawn on another's module) gets a copy of the first's when first asked."""

    def __init__(self, modules: Sequence[nn.Module | None], weights: Sequence[Weights],
                 device: torch.device | None = None):
        self.k = len(weights)
        first = modules[0]
        assert first is not None, "the first member has a module of its own"
        device = device or next(iter(weights[0][0].values())).device
        self.device = device
        grads = {n: p.requires_grad for n, p in first.named_parameters()}
        self.params: dict[str, torch.Tensor] = {  # leaves that require grad
            n: torch.stack([w[0][n] for w in weights]).to(device).requires_grad_(grads[n]) for n in weights[0][0]}
        self.buffers: dict[str, torch.Tensor] = {
            n: torch.stack([w[1][n] for w in weights]).to(device) for n in weights[0][1]}
        self.base = copy.deepcopy(first).to("meta")  # the structure only; no memory
        self._members = list(modules)                # for grabs and snapshots: a member as a module
        self._on_device: set[int] = set()

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(self.base, (p, b), (x,))

        self._forward = torch.func.vmap(one)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """Every member on its own inputs: X is [K, batch, ...], the output [K, batch, ...]."""
        return self._forward(self.params, self.buffers, X)

    def losses(self, member_loss: LossFn, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's loss on its own batch: a [K] tensor (`member_loss`: optim.MEMBER_LOSSES)."""
        return member_loss(self(X), y)

    def member(self, i: int, grads: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """Member i as the module it would be alone: its weights copied out of the stack, and its part
        of the last step's gradients as .grad (a grab such as grad_norm reads them). For grabs and
        snapshots; what is done to it does not flow back."""
        module = self._members[i]
        if module is None:
            module = self._members[i] = copy.deepcopy(self._members[0])
        if i not in self._on_device:
            module.to(self.device)
            self._on_device.add(i)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(self.params[name][i])
                p.grad = None if grads is None else grads[name][i].clone()
            for name, b in module.named_buffers():
                b.copy_(self.buffers[name][i])
        return module

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)


class StackedOptimizer:
    """SGD (momentum, nesterov, weight decay) or Adam/AdamW over stacked parameters, with lr,
    momentum, weight decay, betas and eps held per member as [K] tensors; the update of each member
    is torch.optim's formula with that member's scalars. Nothing is read back to the host, so the
    step can be recorded in a CUDA graph."""

    def __init__(self, params: dict[str, torch.Tensor], options: Sequence[TrainOptions]):
        first = options[0]
        self.kind, self.nesterov = first.optimizer, first.nesterov
        device = next(iter(params.values())).device
        self.params = list(params.values())

        def per_member(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)

        self.lr = per_member([o.lr for o in options])  # set in place (set_lr): a graph holds this tensor
        # Terms every member has at 0 are left out of the step (exactly: 0 * x adds nothing to a finite x).
        self.decays = any(o.weight_decay for o in options)
        self.momentums = any(o.momentum for o in options)
        self.weight_decay = per_member([o.weight_decay for o in options])
        self.momentum = per_member([o.momentum for o in options])
        self.beta1 = per_member([o.betas[0] for o in options])
        self.beta2 = per_member([o.betas[1] for o in options])
        self.eps = per_member([o.eps for o in options])
        self.steps = torch.zeros((), dtype=torch.float32, device=device)  # Adam's step count, on the device
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    def set_lr(self, lr: Sequence[float] | torch.Tensor) -> None:
        """Each member's learning rate from now on (0 freezes a member: its weights stay as they are)."""
        self.lr.copy_(torch.as_tensor(lr, dtype=torch.float32))

    @staticmethod
    def _over(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A [K] tensor shaped to broadcast over a stacked [K, ...] parameter."""
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One update of every member, the gradients in the order of the stacked parameters."""
        if self.kind == "sgd":
            self._sgd(grads)
        else:
            self._adam(grads, decoupled=self.kind == "adamw")

    def _sgd(self, grads: Sequence[torch.Tensor]) -> None:
        for p, g, state in zip(self.params, grads, self.state):
            lr, wd, mom = (self._over(v, p) for v in (self.lr, self.weight_decay, self.momentum))
            d_p = g + wd * p if self.decays else g
            if self.momentums:
                buf = state.get("momentum")
                if buf is None:  # the first step: torch starts the buffer at d_p, as 0 * momentum + d_p is
                    buf = state["momentum"] = torch.zeros_like(p)
                buf.mul_(mom).add_(d_p)
                d_p = d_p + mom * buf if self.nesterov else buf
            p.sub_(lr * d_p)

    def _adam(self, grads: Sequence[torch.Tensor], decoupled: bool) -> None:
        self.steps.add_(1)
        for p, g, state in zip(self.params, grads, self.state):
            lr, wd, b1, b2, eps = (self._over(v, p) for v in (self.lr, self.weight_decay, self.beta1, self.beta2,
                                                               self.eps))
            if decoupled:
                p.mul_(1 - lr * wd)
            else:
                g = g + wd * p
            if "exp_avg" not in state:
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g * (1 - b2))
            bias1, bias2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
            denom = (v.sqrt() / bias2.sqrt()).add_(eps)
            p.sub_((lr / bias1) * m / denom)


def summed_loss_backward(model: StackedModel, losses: torch.Tensor) -> dict[str, torch.Tensor]:
    """The gradient of every member's loss with respect to its own parameters, in one backward."""
    grads = torch.autograd.grad(losses.sum(), list(model.params.values()))
    return dict(zip(model.params, grads))

