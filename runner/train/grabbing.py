"""Grabs: what runner hands every grab by name, and the call of each grab at a step.

`GrabContext` is the one definition of those names: validation (runner.train.plan) derives
`GRAB_CONTEXT` from its fields (a config key may not take one of them), and the loop builds one per
grab step. No torch at import: plan.py, which submit imports, reads the names from here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..registry import Plugin

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GrabContext:
    """Everything a grab may take besides its own config keys; `model` is passed positionally."""

    model: torch.nn.Module
    step: int
    X_train: torch.Tensor | None
    y_train: torch.Tensor | None
    X_test: torch.Tensor | None
    y_test: torch.Tensor | None
    optimizer: torch.optim.Optimizer
    init_params: list[torch.Tensor]
    config: dict[str, Any]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch: tuple[torch.Tensor, torch.Tensor] | None  # the last step's batch (None before the first step)

    def keywords(self) -> dict[str, Any]:
        """The names after `model`, as keyword arguments (the objects themselves: asdict would copy them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)[1:]}


GRAB_CONTEXT: tuple[str, ...] = tuple(f.name for f in fields(GrabContext))


def grab_name(plugin: Plugin) -> str:
    """The name a grab's values are recorded under: its registered name, else the function's."""
    return getattr(plugin.fn, "__runner_name__", None) or plugin.ref.rpartition(":")[2]


def run_grabs(grabs: Sequence[tuple[Plugin, dict[str, Any]]], ctx: GrabContext,
              record: Callable[[str, int, Any], None]) -> None:
    """Call each grab with its own keys and the context; `record(name, step, value)` stores what it returns."""
    keywords = ctx.keywords()
    for plugin, kwargs in grabs:
        record(grab_name(plugin), ctx.step, plugin.fn(ctx.model, **kwargs, **keywords))
