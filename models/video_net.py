"""Clip models: uint8 clips -> ``InputNormalize`` -> backbone -> frame maps ``(N,C,T,H,W)`` ->
aggregator -> ``(N,D)`` -> head. Both nets take the datasets' uint8 clips ``(N,C,T,H,W)`` and
normalise them on their own device (``mean``/``std``); float clips count as already normalised."""
from __future__ import annotations

import torch
from torch import nn

from .heads import BNNeck, LinearHead, call_aggregator
from .input_norm import IMAGENET_MEAN, IMAGENET_STD, InputNormalize


class VideoReIDNet(nn.Module):
    """Video re-ID network. Training forward returns a dict for the losses:
    ``logits``, ``feat`` (before the BNNeck, for the triplet loss), ``aux_losses`` and
    ``aux_feats`` (branch features of aggregators such as STGCN, each supervised like ``feat``).
    Eval forward returns the embedding (after the BNNeck, or before with ``neck_feat="before"``).
    """

    def __init__(self, backbone: nn.Module, aggregator: nn.Module, num_classes: int, neck: bool = True,
                 neck_feat: str = "after", mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.normalize = InputNormalize(mean, std)
        self.backbone, self.aggregator = backbone, aggregator
        dim = aggregator.out_channels
        self.head = BNNeck(dim, num_classes, neck=neck)
        self.neck_feat = neck_feat
        # branch features that aggregators return for supervision (declared as aux_feature_dims)
        self.aux_heads = nn.ModuleDict({name: BNNeck(d, num_classes, neck=neck) for name, d in
                                        getattr(aggregator, "aux_feature_dims", {}).items()})

    def forward(self, clips: torch.Tensor):
        maps = self.backbone(self.normalize(clips))
        feat, aux = call_aggregator(self.aggregator, maps, return_aux=self.training)
        if not self.training:
            _, before, after = self.head(feat)
            return after if self.neck_feat == "after" else before
        logits, before, _ = self.head(feat)
        out = {"logits": logits, "feat": before, "aux_losses": aux.get("losses", {}), "aux_feats": {}}
        for name, f in aux.get("features", {}).items():
            if name not in self.aux_heads:
                raise KeyError(f"aggregator returned branch feature {name!r} but declares only "
                               f"{list(self.aux_heads)} in aux_feature_dims")
            out["aux_feats"][name] = (self.aux_heads[name](f)[0], f)
        return out


class VideoClassifier(nn.Module):
    """Action recognition network: backbone, aggregator (TSN average by default), linear head.
    Training forward returns ``{"logits", "aux_losses"}``; eval forward returns logits."""

    def __init__(self, backbone: nn.Module, aggregator: nn.Module, num_classes: int, dropout: float = 0.5,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.normalize = InputNormalize(mean, std)
        self.backbone, self.aggregator = backbone, aggregator
        self.head = LinearHead(aggregator.out_channels, num_classes, dropout)

    def forward(self, clips: torch.Tensor):
        feat, aux = call_aggregator(self.aggregator, self.backbone(self.normalize(clips)), return_aux=self.training)
        logits = self.head(feat)
        if not self.training:
            return logits
        return {"logits": logits, "aux_losses": aux.get("losses", {})}
