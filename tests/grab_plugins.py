"""Models used by tests/unit/test_grabs.py (importable as 'grab_plugins:<name>' from a job config)."""
from __future__ import annotations

import torch
from torch import nn


class NoisyNet(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: training draws from the global RNG (dropout)
    and updates buffers (BatchNorm statistics), so a grab that ran the model in train mode or drew
    from the global RNG would change the training run."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 16, dropout_p: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout_p),
                                 nn.Linear(hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
