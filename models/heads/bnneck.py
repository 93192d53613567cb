"""BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-identification",
CVPRW 2019): triplet loss on the feature before a bias-free BN, ID loss on a bias-free linear
classifier after it; the BN feature is the retrieval embedding."""
from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    def __init__(self, in_dim: int, num_classes: int, neck: bool = True, dropout: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim) if neck else nn.Identity()
        if neck:
            self.bn.bias.requires_grad_(False)
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(in_dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor):
        """Returns ``(logits or None, feature before BN, feature after BN)``."""
        after = self.bn(feat)
        logits = self.classifier(self.dropout(after)) if self.classifier is not None else None
        return logits, feat, after
