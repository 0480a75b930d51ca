"""Built-in models. Constructor parameters are filled by name from the job config; d_in and
d_out come from the data's shapes unless the config sets them."""
from __future__ import annotations

import torch
from torch import nn

from .registry import model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


@model("mlp")
class MLP(nn.Module):
    """A fully connected network: `depth` hidden layers of `width` units, then a linear readout.

    depth 2 means d_in -> width -> width -> d_out (one width x width layer); depth 0 is linear.
    """

    def __init__(self, d_in: int, d_out: int, width: int = 256, depth: int = 2, activation: str = "relu", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if depth < 0 or width < 1:
            raise ValueError("mlp needs depth >= 0 and width >= 1")
        layers: list[nn.Module] = []
        fan_in = d_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, bias=bias), ACTIVATIONS[activation]()]
            fan_in = width
        layers.append(nn.Linear(fan_in, d_out, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
