"""Residual Attention Network's attention module (``residual_attention``): trunk x (1 + soft mask)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout, StageInfo
from .registry import register_attention


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit with identity shortcut, width ``channels / 4``:
    ``x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x)))))))))``, convs without bias."""

    def __init__(self, channels: int):
        super().__init__()
        mid = max(1, channels // 4)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[PreActBottleneck(channels) for _ in range(count)])


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize to ``size`` with Caffe ``Interp`` semantics (``align_corners=True``)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def mask_pools_of_stage(info: StageInfo) -> dict:
    """Attention-56's module after trunk stage ``s`` (1..3) has ``4 - s`` mask pools."""
    return {"stage": min(info.stage, 3)}


@register_attention("residual_attention", family="hybrid", kind="block",
                    aliases=("attention_module", "ran"))
class ResidualAttentionModule(nn.Module):
    """Attention module of the Residual Attention Network.

    Wang, Jiang, Qian, Yang, Li, Zhang, Wang, Tang, "Residual Attention Network for Image
    Classification", CVPR 2017, https://arxiv.org/abs/1704.06904

    ``p`` pre-activation units, then a trunk ``T`` of ``t`` units and a soft-mask branch ``M`` in
    parallel, Eq. (3): ``H = (1 + M(x)) * T(x)``, then ``p`` units. The mask is a bottom-up /
    top-down hourglass: ``num_pools = 4 - stage`` max-pools (3x3, stride 2), ``r`` units after
    each (``2r`` at the bottom), one-unit skip connections added at every intermediate
    resolution on the way up, ``r`` units after each addition, bilinear upsampling to the size of
    the level above (odd sizes work), then BN-ReLU-conv1x1-BN-ReLU-conv1x1-sigmoid.
    Defaults ``p=1, t=2, r=1``, ``stage=1`` (3 pools: the 56x56 stage of Attention-56/92, whose
    innermost map is 7x7; stage 2: 2 pools, stage 3: 1 pool). Layout, bias-free convs and the
    ``align_corners=True`` interpolation follow the released Caffe model; its pools are pad-0
    ceil-mode, ours pad 1 (same output sizes on even maps, and no failure below 3 pixels).
    Paper layout (Attention-56): one module after stages 1, 2, 3 of the trunk with ``stage``
    1, 2, 3 (3/2/1 pools); a module a user puts after stage 4 gets ``stage=3`` (1 pool). The
    paper's trunk is a pre-activation ResNet of its own, so a torchvision ResNet-50 with these
    three modules (38.4M parameters) is not Attention-56 and is not compared with its count.
    (The seed article's "Residual attention" snippet is the CSRA head, registered as ``csra``.)
    """

    placement = "stage_end"
    paper_layout = Layout(stages=(1, 2, 3), per_stage=mask_pools_of_stage,
                          source="paper Table 1 (Attention-56): one module after stages 1-3, 3/2/1 mask pools")

    def __init__(self, channels: int, stage: int = 1, p: int = 1, t: int = 2, r: int = 1):
        super().__init__()
        if stage not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3 (3, 2 or 1 mask pools), got {stage}")
        self.num_pools = 4 - stage
        self.pre = units(channels, p)
        self.trunk = units(channels, t)
        self.down = nn.ModuleList([units(channels, r) for _ in range(self.num_pools - 1)]
                                  + [units(channels, 2 * r)])
        self.skips = nn.ModuleList([PreActBottleneck(channels) for _ in range(self.num_pools - 1)])
        self.up = nn.ModuleList([units(channels, r) for _ in range(self.num_pools - 1)])
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False),
            nn.Sigmoid())
        self.post = units(channels, p)

    def soft_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``M(x)`` in (0, 1), same shape as ``x``."""
        levels = []
        y = x
        for down in self.down:
            y = down(F.max_pool2d(y, 3, stride=2, padding=1))
            levels.append(y)
        for level in reversed(range(self.num_pools - 1)):
            skip = levels[level]
            y = self.up[level](upsample_to(y, skip.shape[-2:]) + self.skips[level](skip))
        return self.mask_head(upsample_to(y, x.shape[-2:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        return self.post((1 + self.soft_mask(x)) * self.trunk(x))
