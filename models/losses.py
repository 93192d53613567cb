"""Losses: label-smoothed cross-entropy, batch-hard triplet (margin / soft margin), center loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy with label smoothing epsilon (Szegedy et al. 2016; 0.1 in the re-ID baselines)."""

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.epsilon)


def pairwise_distance(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Euclidean (clamped for a safe gradient at 0) or cosine distance matrix, in float32."""
    x, y = x.float(), y.float()
    if metric == "cosine":
        return 1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()
    if metric != "euclidean":
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.t()
    return d2.clamp_min(1e-12).sqrt()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017): for each anchor the farthest positive and the
    nearest negative in the batch; ``margin > 0`` hinge, ``margin == 0`` soft margin
    ``log(1 + exp(d_ap - d_an))``."""

    def __init__(self, margin: float = 0.3, metric: str = "euclidean"):
        super().__init__()
        self.margin, self.metric = margin, metric

    def forward(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distance(feats, feats, self.metric)
        same = targets[:, None] == targets[None, :]
        d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
        d_an = dist.masked_fill(same, float("inf")).amin(1)
        valid = torch.isfinite(d_an)  # anchors with at least one negative
        gap = torch.where(valid, d_ap - d_an, 0.0)
        per_anchor = F.relu(gap + self.margin) if self.margin > 0 else F.softplus(gap)
        # mean over the valid anchors (0 when none) by masking, not indexing: no host sync
        return torch.where(valid, per_anchor, 0.0).sum() / valid.sum().clamp_min(1)


class CenterLoss(nn.Module):
    """Center loss (Wen et al., ECCV 2016): mean squared distance of features to their class centre."""

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (feats.float() - self.centers[targets]).pow(2).sum(1).mean() / 2
