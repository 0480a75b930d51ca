"""Built-in grabs: measurements taken inside the training loop every `grab_every` steps and at
the end. A grab returns a number, a dict of numbers, or an array; None records nothing.

Importing this package registers them all (see README "Built-in grabs" for parameters and
return layouts):

- norms:      weight_norm, grad_norm, dist_from_init, gram_diag, gram_trace
- kernels:    ntk
- curvature:  hessian_top, hessian_trace
- landscape:  sharpness, interpolation
- metrics:    accuracy

Every built-in leaves the model's parameters, buffers, gradients and train/eval mode as they
were, and never draws from the global RNG (grabs._common says how).
"""
from __future__ import annotations

from .curvature import hessian_top, hessian_trace
from .kernels import ntk
from .landscape import interpolation, sharpness
from .metrics import accuracy
from .norms import dist_from_init, grad_norm, gram_diag, gram_trace, weight_norm

__all__ = [
    "accuracy", "dist_from_init", "grad_norm", "gram_diag", "gram_trace", "hessian_top", "hessian_trace",
    "interpolation", "ntk", "sharpness", "weight_norm",
]
