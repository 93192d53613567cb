"""Action classification heads."""
from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Dropout + linear classifier on the clip embedding (TSN uses dropout 0.8 at ImageNet scale)."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(feat))
