"""Self-calibrated convolution (``scconv``, SCNet): replaces the 3x3 conv of a bottleneck."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


@register_attention("scconv", family="hybrid", kind="block", aliases=("sc_conv", "scnet"))
class SelfCalibratedConv(nn.Module):
    """Self-calibrated convolution, the 3x3 stage of an SCNet bottleneck.

    Liu, Hou, Cheng, Wang, Feng, "Improving Convolutional Networks with Self-Calibrated
    Convolutions", CVPR 2020, http://mftp.mmcheng.net/Papers/20cvprSCNet.pdf

    The input is split in channel halves ``[A, B]`` (official order: plain half first).
    Plain path ``Y_A = K1 * A``; self-calibration of ``B`` (the paper's ``X1``), Eq. (1)-(4):
    ``T = AvgPool_r(B)``, ``B' = Up(K2 * T)``, ``Y' = (K3 * B) . sigmoid(B + B')``,
    ``Y_B = K4 * Y'``; output ``[Y_A, Y_B]``. ``pooling_r = 4`` (official), nearest upsampling,
    ``K2``/``K3`` are conv + BN at the input resolution, ``K1``/``K4`` carry the stride.
    In the official ``SCBottleneck`` ``K1`` and ``K4`` are followed by BN + ReLU: here these are
    the host block's ``bn2`` + ReLU (a per-channel BN of ``[Y_A, Y_B]`` equals one BN per half),
    and the official pair of 1x1 convs ``conv1_a``/``conv1_b`` is the host's ``conv1`` split in
    halves, so a torchvision bottleneck with this block at ``replace_conv2`` is SCNet's block.
    Maps smaller than ``pooling_r`` pool over the whole side (the official code fails there).
    """

    placement = "replace_conv2"
    paper_layout = Layout(source="paper / official SCNet-50: the 3x3 conv of every unit")

    def __init__(self, channels: int, out_channels: int | None = None, stride: int = 1,
                 pooling_r: int = 4, dilation: int = 1):
        super().__init__()
        out_channels = out_channels or channels
        if channels % 2 or out_channels % 2:
            raise ValueError(f"scconv splits channels in halves: got {channels} -> {out_channels}")
        half_in, half_out = channels // 2, out_channels // 2
        self.pooling_r = pooling_r
        self.k1 = conv3x3(half_in, half_out, stride, dilation)
        self.k2 = nn.Sequential(conv3x3(half_in, half_in, 1, dilation), nn.BatchNorm2d(half_in))
        self.k3 = nn.Sequential(conv3x3(half_in, half_in, 1, dilation), nn.BatchNorm2d(half_in))
        self.k4 = conv3x3(half_in, half_out, stride, dilation)

    def calibrate(self, b: torch.Tensor) -> torch.Tensor:
        """``Y' = K3(B) * sigmoid(B + Up(K2(AvgPool_r(B))))``."""
        h, w = b.shape[-2:]
        pool = (min(self.pooling_r, h), min(self.pooling_r, w))
        coarse = self.k2(F.avg_pool2d(b, pool, pool))
        return self.k3(b) * torch.sigmoid(b + F.interpolate(coarse, size=(h, w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        return torch.cat((self.k1(a), self.k4(self.calibrate(b))), dim=1)
