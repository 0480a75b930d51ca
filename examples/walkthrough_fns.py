"""The batch function of examples/walkthrough.ipynb, kept in a module next to the notebook.

Workers are separate processes started with `spawn`: they never see what was defined in the
notebook (its `__main__`), only what they can import. So a job names this function by its import
path, 'walkthrough_fns:sine_index', and the workers run from this folder (or have it on PYTHONPATH).
"""
from __future__ import annotations

import torch

import runner


@runner.batchfn("sine_index")
def sine_index(d: int, batch_size: int, freq: float = 1.0, noise: float = 0.0, *, gen: torch.Generator,
               device: torch.device):
    """x ~ N(0, I_d), y = sin(freq * <u, x>) + noise for a random unit direction u (drawn once from gen,
    so the train batches and the test set share it): a single-index target, harder as freq grows."""
    u = torch.randn(d, generator=gen, device=device)
    u = u / u.norm()

    def batch(step: int):
        X = torch.randn(batch_size, d, generator=gen, device=device)
        y = torch.sin(freq * (X @ u))
        if noise:
            y = y + noise * torch.randn(batch_size, generator=gen, device=device)
        return X, y.unsqueeze(1)

    batch.capturable = True  # ignores step, draws only from gen, never reads back: safe in a CUDA graph
    return batch
