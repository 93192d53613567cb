"""Training objectives assembled from LOSS.* (config stops here: the losses take plain numbers).

Each criterion returns ``(loss, parts)``: the total and ``{name: detached tensor}`` on the loss's
device (never host floats: reading them would stall the device every step)."""
from __future__ import annotations

import torch
from torch import nn

from models.losses import CenterLoss, CrossEntropyLabelSmooth, TripletLoss


class ReIDCriterion(nn.Module):
    """CE (label smoothing) on BNNeck logits + batch-hard triplet on the pre-BN feature
    (+ optional center loss); aggregator branch features get the same CE + triplet; aggregator
    regularisers are added with ``aux_weight``."""

    def __init__(self, num_classes: int, feat_dim: int, ce_weight=1.0, label_smooth=0.1, triplet_weight=1.0,
                 margin=0.3, metric="euclidean", center_weight=0.0, aux_weight=1.0):
        super().__init__()
        self.ce = CrossEntropyLabelSmooth(label_smooth)
        self.triplet = TripletLoss(margin, metric)
        self.center = CenterLoss(num_classes, feat_dim) if center_weight > 0 else None
        self.w = dict(ce=ce_weight, triplet=triplet_weight, center=center_weight, aux=aux_weight)

    def forward(self, out: dict, pids: torch.Tensor):
        parts = {}
        if self.w["ce"] > 0:
            parts["ce"] = self.w["ce"] * self.ce(out["logits"], pids)
        if self.w["triplet"] > 0:
            parts["triplet"] = self.w["triplet"] * self.triplet(out["feat"], pids)
        if self.center is not None:
            parts["center"] = self.w["center"] * self.center(out["feat"], pids)
        for name, (logits, feat) in out.get("aux_feats", {}).items():
            parts[f"{name}_ce"] = self.w["aux"] * self.w["ce"] * self.ce(logits, pids)
            parts[f"{name}_triplet"] = self.w["aux"] * self.w["triplet"] * self.triplet(feat, pids)
        for name, value in out.get("aux_losses", {}).items():
            parts[name] = self.w["aux"] * value
        return sum(parts.values()), {k: v.detach() for k, v in parts.items()}


class ActionCriterion(nn.Module):
    """Cross-entropy (optional label smoothing) + aggregator regularisers."""

    def __init__(self, label_smooth: float = 0.0, aux_weight: float = 1.0):
        super().__init__()
        self.ce = CrossEntropyLabelSmooth(label_smooth)
        self.aux_weight = aux_weight

    def forward(self, out: dict, labels: torch.Tensor):
        parts = {"ce": self.ce(out["logits"], labels)}
        for name, value in out.get("aux_losses", {}).items():
            parts[name] = self.aux_weight * value
        return sum(parts.values()), {k: v.detach() for k, v in parts.items()}


def build_criterion(cfg, num_classes: int, feat_dim: int) -> nn.Module:
    L = cfg.LOSS
    if cfg.TASK == "reid":
        return ReIDCriterion(num_classes, feat_dim, L.CE_WEIGHT, L.LABEL_SMOOTH, L.TRIPLET_WEIGHT,
                             L.TRIPLET_MARGIN, L.TRIPLET_METRIC, L.CENTER_WEIGHT, L.AUX_WEIGHT)
    return ActionCriterion(L.LABEL_SMOOTH, L.AUX_WEIGHT)
