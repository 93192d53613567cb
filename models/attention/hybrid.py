"""Channel + spatial attention blocks: CBAM, BAM, scSE (with cSE and sSE), Triplet, SimAM."""
from __future__ import annotations

import torch
from torch import nn

from .channel import SqueezeExcitation
from ._ops import spatial_mean
from .layout import Layout
from .registry import register_attention


def zpool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``[max, mean]`` over ``dim``, stacked as 2 channels: the pooling of CBAM and Triplet."""
    return torch.stack((x.amax(dim), x.mean(dim)), dim=1)


class ConvGate(nn.Module):
    """``sigmoid(BN(conv_kxk(p)))`` on a 2-channel pooled map ``p``: a ``(B, 1, h, w)`` gate.

    Conv without bias, BN with ``momentum=0.01`` as in the official CBAM/Triplet code.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the map size, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(pooled)))


@register_attention("cbam", family="hybrid", kind="block", aliases=("cbam2d",))
class CBAM(nn.Module):
    """Convolutional Block Attention Module.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521

    ``Mc = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with one shared MLP ``C -> C/r -> C``
    (biases, ReLU), ``F' = Mc * F``; ``Ms = sigmoid(BN(conv7x7([MaxPool_c(F'); AvgPool_c(F')])))``,
    ``F'' = Ms * F'`` (Eq. 1-3; channel first, then spatial). Defaults ``r = 16``, kernel 7.
    The [max, mean] order and the BN follow the official code (the paper writes [avg; max]).
    The survey article's snippet uses kernel 49 and adds ``F`` back at the end; the paper uses a
    7x7 kernel and no extra residual (the block sits inside a residual branch), as here.
    """

    placement = "post"
    paper_layout = Layout(source="paper Fig. 3 / official CBAM-ResNet-50: every residual unit")

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = ConvGate(kernel_size)

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        logits = self.mlp(torch.cat((spatial_mean(x), x.amax((2, 3)))))  # (2B, C), one MLP call
        return torch.sigmoid(logits[:b] + logits[b:])[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_gate(x)
        return x * self.spatial(zpool(x, 1))


@register_attention("bam", family="hybrid", kind="block")
class BAM(nn.Module):
    """Bottleneck Attention Module.

    Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018,
    https://arxiv.org/abs/1807.06514

    ``variant="paper"`` (default), Eq. 1-4 of the paper:
    ``Mc = BN(W1 relu(W0 AvgPool(F) + b0) + b1)`` (``C -> C/r -> C``, BN over the ``C`` outputs),
    ``Ms = BN(f1x1(f3x3(f3x3(f1x1(F)))))`` (``C -> C/r``, two 3x3 convs with dilation ``d``,
    ``C/r -> 1``, BN over the one-channel map), ``M = sigmoid(Mc + Ms)`` broadcast to
    ``C x H x W``, ``F' = F + F * M``. The equations show no hidden activations; the ReLU in the
    MLP and the BN + ReLU after each hidden conv of the spatial branch come from the official
    code. ResNet-50 with three BAMs (after stages 1-3): 25.918M parameters (paper: 25.92M).

    ``variant="official"``, the released ``MODELS/bam.py`` (Jongchan/attention-module):
    ``Mc = W1 relu(BN(W0 AvgPool(F) + b0)) + b1`` (BN inside the MLP on the ``C/r`` hidden
    units, none after it), ``Ms = f1x1(...)`` with no final BN, ``M = sigmoid(Mc * Ms)`` (the
    product, not the paper's sum), ``F' = F * (1 + M)``; its ResNet zeroes every bias and draws
    the conv weights from kaiming-normal (fan-out), reproduced here. ResNet-50 + 3 BAMs:
    25.915M parameters. Differences from that file: its channel pooling uses a square
    ``H x H`` average-pool window (wrong on non-square maps, which re-ID has), here the global
    mean; its ``ChannelGate`` reads an undefined ``gate_activation`` (a NameError as released).

    Defaults ``r = 16``, ``d = 4``, padding ``d`` keeps every map size (odd and tiny ones
    included). Placed once at the end of a stage (between stages). The channel BN normalises
    pooled vectors over the batch, so training needs B > 1. The survey article's snippet (three
    MLP layers, dilation 2 with padding 1) differs: the paper wins.
    """

    placement = "stage_end"
    VARIANTS = ("paper", "official")
    paper_layout = Layout(stages=(1, 2, 3), source=(
        "paper Sec. 3 / Fig. 1: three BAMs, at the bottlenecks after stages 1-3"))

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4,
                 num_dilated_convs: int = 2, variant: str = "paper"):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"bam: variant must be one of {self.VARIANTS}, got {variant!r}")
        self.variant = variant
        official = variant == "official"
        hidden = max(1, channels // reduction)
        mlp = [nn.Linear(channels, hidden)] + ([nn.BatchNorm1d(hidden)] if official else [])
        self.channel_mlp = nn.Sequential(*mlp, nn.ReLU(), nn.Linear(hidden, channels))
        self.channel_bn = nn.Identity() if official else nn.BatchNorm1d(channels)
        layers = [nn.Conv2d(channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU()]
        for _ in range(num_dilated_convs):
            layers += [nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
                       nn.BatchNorm2d(hidden), nn.ReLU()]
        layers += [nn.Conv2d(hidden, 1, 1)] + ([] if official else [nn.BatchNorm2d(1)])
        self.spatial = nn.Sequential(*layers)
        if official:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.zeros_(m.bias)

    def merge(self, mc: torch.Tensor, ms: torch.Tensor) -> torch.Tensor:
        """``M`` from the channel ``(B, C, 1, 1)`` and spatial ``(B, 1, H, W)`` maps."""
        return torch.sigmoid(mc * ms if self.variant == "official" else mc + ms)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``M`` broadcastable to ``x``."""
        mc = self.channel_bn(self.channel_mlp(spatial_mean(x)))[:, :, None, None]
        return self.merge(mc, self.spatial(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + self.attention(x))


@register_attention("cse", family="hybrid", kind="block")
class ChannelSE(SqueezeExcitation):
    """cSE of Roy et al.: SE with their reduction ``r = 2`` (see :class:`SCSE`)."""

    placement = "post"
    paper_layout = Layout(source="ours: every residual unit, as SE (the paper's nets are U-Nets)")

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__(channels, reduction)


@register_attention("sse", family="hybrid", kind="block")
class SpatialSE(nn.Module):
    """sSE of Roy et al.: ``y = x * sigmoid(conv1x1_{C->1}(x))`` (see :class:`SCSE`).

    The one-output 1x1 conv runs as a batched mat-vec (same weights and value): CPU convolution
    kernels are slow for a single output channel.
    """

    placement = "post"
    paper_layout = Layout(source="ours: every residual unit, as SE (the paper's nets are U-Nets)")

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial gate ``(B, 1, H, W)``."""
        b, c, h, w = x.shape
        q = torch.matmul(self.conv.weight.view(1, 1, c), x.reshape(b, c, h * w)) + self.conv.bias.view(1, 1, 1)
        return torch.sigmoid(q.view(b, 1, h, w)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


@register_attention("scse", family="hybrid", kind="block")
class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation.

    Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully
    Convolutional Networks", MICCAI 2018, https://arxiv.org/abs/1803.02579

    ``x_cSE = x * sigmoid(W2 relu(W1 GAP(x)))`` (reduction ``r = 2``, as in the paper and the
    official code), ``x_sSE = x * sigmoid(conv1x1(x))``, ``x_scSE = x_cSE + x_sSE`` (the paper's
    element-wise addition, default). ``aggregation="max"`` is the max-out of the journal version
    (Roy et al., TMI 2019) and of the official code; ``"mul"`` is the element-wise product.
    """

    placement = "post"
    paper_layout = Layout(source="ours: every residual unit, as SE (the paper's nets are U-Nets)")

    def __init__(self, channels: int, reduction: int = 2, aggregation: str = "add"):
        super().__init__()
        if aggregation not in ("add", "max", "mul"):
            raise ValueError(f"scse: aggregation must be 'add', 'max' or 'mul', got {aggregation!r}")
        self.aggregation = aggregation
        self.cse = ChannelSE(channels, reduction)
        self.sse = SpatialSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel, spatial = self.cse(x), self.sse(x)
        if self.aggregation == "add":
            return channel + spatial
        if self.aggregation == "max":
            return torch.maximum(channel, spatial)
        return channel * spatial


@register_attention("triplet", family="hybrid", kind="block", aliases=("triplet_attention",))
class TripletAttention(nn.Module):
    """Triplet Attention.

    Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention
    Module", WACV 2021, https://arxiv.org/abs/2010.03045

    Three branches, each ``x * sigmoid(BN(conv7x7(Z-pool(x_rot))))`` with
    ``Z-pool = [max, mean]`` over the rotated leading axis: (C, W) interaction (pool over H),
    (H, C) interaction (pool over W) and the plain (H, W) spatial branch (pool over C);
    ``y = (y_cw + y_hc + y_hw) / 3``. Kernel 7, conv without bias, BN momentum 0.01 (official).
    The rotations are done on the pooled 2-channel maps only, in the official axis order, so the
    weights match the official layout. ``no_spatial=True`` drops the (H, W) branch (mean of two).
    """

    placement = "post"
    paper_layout = Layout(source="paper / official code: every residual unit")

    def __init__(self, channels: int | None = None, kernel_size: int = 7, no_spatial: bool = False):
        super().__init__()
        self.cw = ConvGate(kernel_size)
        self.hc = ConvGate(kernel_size)
        self.hw = None if no_spatial else ConvGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_cw = self.cw(zpool(x, 2)).transpose(1, 2)                  # (B, C, 1, W)
        gate_hc = self.hc(zpool(x, 3).transpose(2, 3)).permute(0, 3, 2, 1)  # (B, C, H, 1)
        if self.hw is None:
            return x * ((gate_cw + gate_hc) / 2)
        gate_hw = self.hw(zpool(x, 1))                                  # (B, 1, H, W)
        return x * ((gate_cw + gate_hc + gate_hw) / 3)


@register_attention("simam", family="hybrid", kind="block")
class SimAM(nn.Module):
    """SimAM: parameter-free 3-D attention from an energy function.

    Yang, Zhang, Li, Xie, "SimAM: A Simple, Parameter-Free Attention Module for Convolutional
    Neural Networks", ICML 2021, https://proceedings.mlr.press/v139/yang21o.html

    Per channel, ``mu`` and ``sigma^2 = sum (x - mu)^2 / n`` with ``n = H*W - 1``;
    ``1/e* = (x - mu)^2 / (4 (sigma^2 + lambda)) + 0.5`` (Eq. 16), ``y = x * sigmoid(1/e*)``
    (Eq. 17). ``lambda = 1e-4``; no parameters (``channels`` is accepted and ignored).
    Placement: the official ResNets put SimAM right after the 3x3 conv (before its BN) in both
    BasicBlock and Bottleneck: ``post_conv2``.
    """

    placement = "post_conv2"
    paper_layout = Layout(source="official SimAM-ResNet: every residual unit, after the 3x3 conv")

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - spatial_mean(x, keepdim=True)).pow(2)
        energy_inv = d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(energy_inv)

    def extra_repr(self) -> str:
        return f"lambda={self.e_lambda}"
