"""Plug-ins used by the tests (importable as 'plugins_for_tests:<name>')."""
from __future__ import annotations

import os
import sys
import time

import torch


def linear_teacher(d: int, batch_size: int, noise: float = 0.5, *, gen: torch.Generator, device: torch.device):
    """y = X w* + noise: least squares is the exact optimum of an affine model under MSE."""
    w = torch.randn(d, generator=gen, device=device)

    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, (X @ w + noise * torch.randn(batch_size, generator=gen, device=device)).unsqueeze(1)

    return batch


def slow_teacher(d: int, batch_size: int, delay: float = 0.001, *, gen: torch.Generator, device: torch.device):
    """A gaussian batch that takes `delay` seconds per step, to make jobs last a known time."""

    def batch(step: int):
        time.sleep(delay)
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


def exploding_batchfn(d: int, batch_size: int, fail_at: int = 3, *, gen: torch.Generator, device: torch.device):
    """Raises at step `fail_at`: a batch function with a bug."""

    def batch(step: int):
        if step == fail_at:
            raise RuntimeError(f"boom at step {step}")
        return torch.randn(batch_size, d, generator=gen, device=device), torch.zeros(batch_size, 1, device=device)

    return batch


def sleeping_batchfn(d: int, batch_size: int, sleep_at: int = -1, *, gen: torch.Generator, device: torch.device):
    """Sleeps for an hour at step `sleep_at` (-1: never): a batch function stuck in its own code."""

    def batch(step: int):
        if step == sleep_at:
            time.sleep(3600)
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


LEAKED: list = []  # what a leaking job left behind in its process


def leaking_batchfn(d: int, batch_size: int, leak: bool = False, *, gen: torch.Generator, device: torch.device):
    """leak: leaves 80 MB behind in the process and fails with MemoryError at step 2, as a job that
    leaked until the allocator gave up. Any job built in a process after such a leak runs out of
    memory too (as it would under an address-space limit): what recycling the worker prevents."""
    if LEAKED:
        raise MemoryError(f"cannot allocate: {len(LEAKED)} leaked buffers from an earlier job in this process")

    def batch(step: int):
        if leak and step == 2:
            LEAKED.append(bytearray(80 * 2**20))
            raise MemoryError("the job leaked until it ran out of memory")
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


def blobs(d: int, batch_size: int, classes: int = 3, *, gen: torch.Generator, device: torch.device):
    """Gaussian blobs around random centres, integer labels: a cross-entropy task."""
    centres = 3 * torch.randn(classes, d, generator=gen, device=device)

    def batch(step: int):
        y = torch.randint(classes, (batch_size,), generator=gen, device=device)
        return centres[y] + torch.randn(batch_size, d, generator=gen, device=device), y

    batch.n_classes = classes
    return batch


def scaled_norm(model: torch.nn.Module, scale: float = 1.0, **ctx) -> float:
    """A grab with its own parameter, filled by name from the job config."""
    return scale * float(sum(p.detach().norm() for p in model.parameters()))


def failing_grab(model: torch.nn.Module, **ctx) -> float:
    raise ValueError("grab failed on purpose")


def first_layer(model: torch.nn.Module, **ctx):
    """A grab returning an array: the first parameter tensor."""
    return next(model.parameters()).detach().clone()


def big_array(model: torch.nn.Module, **ctx):
    """A grab returning a 2.4 MB array (300,000 float64): over a lowered RUNNER_MAX_ARRAY_MB."""
    return torch.zeros(300_000, dtype=torch.float64)


def dying_batchfn(d: int, batch_size: int, *, gen: torch.Generator, device: torch.device):
    """At step 2 says why on stderr and ends its process at once (exit code 3): a worker that dies."""

    def batch(step: int):
        if step == 2:
            print("dying on purpose: the native library gave up", file=sys.stderr, flush=True)
            os._exit(3)
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


def no_batch_size(d: int, *, gen: torch.Generator, device: torch.device):
    """Not a valid batch function: the loop could not tell it how many samples to draw."""
    return lambda step: (torch.zeros(1, d), torch.zeros(1, 1))


def oom_batchfn(d: int, batch_size: int, fail_at: int = 2, *, gen: torch.Generator, device: torch.device):
    """Raises the error PyTorch raises when the GPU is full, on any device (CPU tests included)."""

    def batch(step: int):
        if step == fail_at:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (raised by the test)")
        return torch.randn(batch_size, d, generator=gen, device=device), torch.zeros(batch_size, 1, device=device)

    return batch


def hidden_scale(model: torch.nn.Module, X_test: torch.Tensor, **ctx) -> float:
    """Mean |h| of an mlp's last hidden layer on the test inputs: the coordinate check's measurement."""
    with torch.no_grad():
        h = X_test
        for layer in model.net[:-1]:
            h = layer(h)
        return float(h.abs().mean())


def syncing_teacher(d: int, batch_size: int, *, gen: torch.Generator, device: torch.device):
    """Claims it can be captured but reads a value back to the host: capture must fall back."""
    w = torch.randn(d, generator=gen, device=device)

    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        scale = float(X.abs().max())  # a host read: not allowed while a graph is being captured
        return X, (X @ w / scale).unsqueeze(1)

    batch.capturable = True
    return batch


class SyncingMLP(torch.nn.Module):
    """A model whose forward reads a value back to the host: its steps can never be captured."""

    def __init__(self, d_in: int, d_out: int, width: int = 16):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, width), torch.nn.ReLU(), torch.nn.Linear(width, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().max()) > 1e6:
            x = x.clamp(-1e6, 1e6)
        return self.net(x)


def priority_teacher(d: int, batch_size: int, priority: int = 0, *, gen: torch.Generator, device: torch.device):
    """Takes a parameter named like a queue setting: refused at submit (the value would never reach it)."""

    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch


def batch_sum(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None, **ctx) -> float | None:
    """A grab: the sum of the last step's inputs (two jobs that share every batch record equal values)."""
    return None if batch is None else float(batch[0].double().sum())


def talking_teacher(d: int, batch_size: int, say: int = 1, fail_at: int = -1, hang_at: int = -1,
                    *, gen: torch.Generator, device: torch.device):
    """Prints `say` lines, warns and logs once when made, then fails at step `fail_at` or hangs at
    `hang_at` (-1: never): a job whose output its log must keep."""
    import logging
    import warnings

    for i in range(say):
        print(f"talking_teacher line {i} (batch {batch_size})")
    print("talking_teacher to stderr", file=sys.stderr)
    warnings.warn("talking_teacher warns once per job")
    logging.getLogger("talking_teacher").warning("talking_teacher logs a record")

    def batch(step: int):
        if step == fail_at:
            raise RuntimeError(f"talking_teacher fails at step {step}")
        if step == hang_at:
            print(f"talking_teacher hangs at step {step}", flush=True)
            time.sleep(3600)
        X = torch.randn(batch_size, d, generator=gen, device=device)
        return X, X[:, :1].clone()

    return batch
