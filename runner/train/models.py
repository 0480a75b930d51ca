"""Built-in models. Constructor parameters are filled by name from the job config; d_in and
d_out come from the data's shapes unless the config sets them.

`mlp` covers the standard and the maximal-update parametrization (muP, through the `mup`
package), a richness multiplier `gamma` and output centering; `dln` is a deep linear network.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..registry import model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}
INITS = ("default", "xavier", "he")
PARAMETRIZATIONS = ("sp", "mup")


def _layers(d_in: int, d_out: int, widths: Sequence[int], activation: str, bias: bool, dropout: float,
            readout: type[nn.Linear]) -> nn.Sequential:
    layers: list[nn.Module] = []
    fan_in = d_in
    for width in widths:
        layers += [nn.Linear(fan_in, width, bias=bias), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(readout(fan_in, d_out, bias=bias))
    return nn.Sequential(*layers)


@model("mlp")
class MLP(nn.Module):
    """A fully connected network: `depth` hidden layers of `width` units, then a linear readout.

    depth 2 means d_in -> width -> width -> d_out (one width x width layer); depth 0 is linear.
    `hidden_dims` ([64, 32, 16]) gives each hidden layer its own width instead (width and depth unused).
    parametrization 'mup' uses mup's MuReadout and base shapes from `base_width` (the optimizer
    becomes MuSGD/MuAdam by itself); the output is divided by `gamma` (richness: larger is richer);
    `center` subtracts the network's output at initialisation, so f starts at exactly 0.
    """

    def __init__(self, d_in: int, d_out: int, width: int = 256, depth: int = 2,
                 activation: Literal["relu", "tanh", "gelu", "linear"] = "relu", bias: bool = True,
                 dropout: float = 0.0, init: Literal["default", "xavier", "he"] = "default",
                 parametrization: Literal["sp", "mup"] = "sp", base_width: int = 64, gamma: float = 1.0,
                 center: bool = False, hidden_dims: list[int] | None = None):
        super().__init__()
        if hidden_dims is not None:
            if not isinstance(hidden_dims, (list, tuple)) or not all(
                    isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden_dims):
                raise ValueError(f"hidden_dims must be a list of positive integers (one width per hidden layer), "
                                 f"got {hidden_dims!r}")
            width, depth = max(hidden_dims, default=1), len(hidden_dims)
        widths = list(hidden_dims) if hidden_dims is not None else [width] * depth
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be sp or mup, got {parametrization!r}")
        if depth < 0 or width < 1 or base_width < 1:
            raise ValueError("mlp needs depth >= 0, width >= 1 and base_width >= 1")
        if parametrization == "mup" and depth < 1:
            raise ValueError("parametrization mup needs depth >= 1: a linear model has no width to scale")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma, self.center = float(gamma), bool(center)
        self.init, self.parametrization = init, parametrization
        shape = dict(d_in=d_in, d_out=d_out, activation=activation, bias=bias, dropout=dropout)
        if parametrization == "mup":
            import mup

            # every hidden layer's width is measured against base_width (the base and delta models)
            self.net = _layers(widths=widths, readout=mup.MuReadout, **shape)
            base = _layers(widths=[base_width] * depth, readout=mup.MuReadout, **shape)
            delta = _layers(widths=[base_width * 2] * depth, readout=mup.MuReadout, **shape)
            mup.set_base_shapes(self.net, base, delta=delta)
            _initialise(self.net, init, mup.init)
        else:
            self.net = _layers(widths=widths, readout=nn.Linear, **shape)
            _initialise(self.net, init, nn.init)
        if self.center:
            # The initial weights ride along as buffers: moved by .to(), saved in checkpoints, never trained.
            for name, p in self.net.named_parameters():
                self.register_buffer("init__" + name.replace(".", "__"), p.detach().clone())

    def reinitialise(self) -> bool:
        """Draw every weight again from the global RNG as the constructor draws them: the same calls in
        the same order (each Linear's own init, then `init`), the centering copies taken again. False
        under mup, whose constructor also draws its base and delta models."""
        if self.parametrization == "mup":
            return False
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
            _initialise(self.net, self.init, nn.init)
            if self.center:
                for name, p in self.net.named_parameters():
                    getattr(self, "init__" + name.replace(".", "__")).copy_(p)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.center:
            with torch.no_grad():
                initial = self._initial_output(x)
            out = out - initial
        return out / self.gamma if self.gamma != 1.0 else out

    def _initial_output(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output with its initial weights (dropout off): what centering subtracts."""
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.Linear):
                if hasattr(layer, "width_mult"):  # mup's MuReadout scales its input by output_mult / width
                    x = x * layer.output_mult / layer.width_mult()
                bias = getattr(self, f"init__{i}__bias", None)
                x = F.linear(x, getattr(self, f"init__{i}__weight"), bias)
            elif not isinstance(layer, nn.Dropout):
                x = layer(x)
        return x


def _initialise(net: nn.Sequential, init: str, fns: object) -> None:
    """Re-draw the weights of every Linear with xavier or he (normal) init, biases zero; 'default'
    keeps PyTorch's. `fns` is torch.nn.init or mup.init (whose versions respect base shapes)."""
    if init == "default":
        return
    for layer in net:
        if isinstance(layer, nn.Linear):
            if init == "xavier":
                fns.xavier_normal_(layer.weight)  # type: ignore[attr-defined]
            else:
                fns.kaiming_normal_(layer.weight, nonlinearity="relu")  # type: ignore[attr-defined]
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


@model("dln")
class DeepLinear(nn.Module):
    """A deep linear network f(x) = W_depth ... W_1 x (no biases), hidden layers of `width`.

    Entries of each W_l are N(0, gamma^2 / fan_in): gamma = 1 keeps the output scale of the input,
    small gamma starts near the origin (the saddle-to-saddle, feature-learning regime)."""

    def __init__(self, d_in: int, d_out: int, width: int = 100, depth: int = 3, gamma: float = 1.0):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError("dln needs depth >= 1 and width >= 1")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        dims = [d_in] + [width] * (depth - 1) + [d_out]
        self.gamma = float(gamma)
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self._draw()

    def _draw(self) -> None:
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.normal_(0.0, self.gamma / math.sqrt(layer.in_features))

    def reinitialise(self) -> bool:
        """Draw the weights again from the global RNG as the constructor draws them (each Linear's own
        init, which the constructor's draw then replaces, and that draw)."""
        with torch.no_grad():
            for layer in self.layers:
                layer.reset_parameters()
        self._draw()
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
