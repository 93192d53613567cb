"""Deformable convolutions v1 (``dcn``) and v2 (``dcnv2``) on ``torchvision.ops.deform_conv2d``.

Both replace the 3x3 convolution of a residual unit (placement ``replace_conv2``): no BN or
activation inside, the host block's ``bn2`` follows.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from .layout import Layout
from .registry import register_attention


def deform_conv2d_fp32(x, offset, weight, bias=None, mask=None, stride=1, padding=1, dilation=1):
    """``deform_conv2d`` computed in float32 (float64 kept), result cast back to ``x.dtype``.

    torchvision has no bfloat16 CPU kernel and no CPU autocast rule for this op; its CUDA autocast
    rule also runs in float32 and returns the input dtype, which is what this does everywhere.
    """
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    args = [None if t is None else t.to(work) for t in (x, offset, weight, bias, mask)]
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            y = deform_conv2d(args[0], args[1], args[2], args[3], stride=stride, padding=padding,
                              dilation=dilation, mask=args[4])
    else:
        y = deform_conv2d(args[0], args[1], args[2], args[3], stride=stride, padding=padding,
                          dilation=dilation, mask=args[4])
    return y.to(x.dtype)


class _DeformConv(nn.Module):
    """Shared body: a kxk deformable conv whose offsets (and v2 masks) come from a kxk conv.

    torchvision's offset layout: ``2 * deformable_groups * k * k`` channels, per group and kernel
    position ``(dy, dx)`` pairs (row offset first). The offset conv has the same kernel, stride,
    padding and dilation as the main conv, so its output grid is the output grid.
    """

    placement = "replace_conv2"
    paper_layout = Layout(stages=(2, 3, 4), source=(
        "DCNv2 paper: every 3x3 conv of conv3-conv5"))
    modulated = False

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, dilation: int = 1, deformable_groups: int = 1,
                 bias: bool = False):
        super().__init__()
        if channels % deformable_groups:
            raise ValueError(f"channels ({channels}) must be divisible by deformable_groups "
                             f"({deformable_groups})")
        out_channels = out_channels or channels
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.deformable_groups = deformable_groups
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, channels, k, k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        per_position = 3 if self.modulated else 2
        self.offset_conv = nn.Conv2d(channels, deformable_groups * per_position * k * k, k,
                                     stride=stride, padding=padding, dilation=dilation)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def offsets_and_mask(self, x: torch.Tensor):
        """``(offset, mask)``; ``mask`` is None for v1, ``sigmoid`` of the last third for v2."""
        out = self.offset_conv(x)
        if not self.modulated:
            return out, None
        dy_dx_a, dy_dx_b, mask_logits = torch.chunk(out, 3, dim=1)  # official DCNv2 split
        return torch.cat((dy_dx_a, dy_dx_b), dim=1), torch.sigmoid(mask_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        return deform_conv2d_fp32(x, offset, self.weight, self.bias, mask, self.stride,
                                  self.padding, self.dilation)


@register_attention("dcn", family="spatial", kind="block", aliases=("dcnv1", "deform_conv"))
class DeformConv2d(_DeformConv):
    """Deformable convolution v1.

    Dai, Qi, Xiong, Li, Zhang, Hu, Wei, "Deformable Convolutional Networks", ICCV 2017,
    https://arxiv.org/abs/1703.06211

    Eq. (2): ``y(p0) = sum_k w_k x(p0 + p_k + dp_k)`` with bilinear sampling (Eq. 3) and the
    offsets ``dp`` from a 3x3 conv over the same input, zero-initialised (weights and bias), so a
    fresh module IS the plain 3x3 conv with ``self.weight``. Defaults: kernel 3, padding 1,
    dilation 1, no bias (a BN follows); ``deformable_groups=4`` as in the released MXNet models
    (``num_deformable_group=4``, offset conv with 72 = 4 x 18 outputs). The paper's lower learning
    rate for offset layers is an optimiser setting, not part of the module.
    Paper layout: the last three 3x3 convs, i.e. every unit of res5 (Table 1's default setting).
    """

    paper_layout = Layout(stages=(4,), source="DCN paper Table 1: the three 3x3 convs of res5")

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, dilation: int = 1, deformable_groups: int = 4,
                 bias: bool = False):
        super().__init__(channels, out_channels, kernel_size, stride, padding, dilation,
                         deformable_groups, bias)


@register_attention("dcnv2", family="spatial", kind="block", aliases=("modulated_deform_conv",))
class ModulatedDeformConv2d(_DeformConv):
    """Modulated deformable convolution (DCNv2).

    Zhu, Hu, Lin, Dai, "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019,
    https://arxiv.org/abs/1811.11168

    Eq. (1): ``y(p) = sum_k w_k x(p + p_k + dp_k) dm_k``. One 3x3 conv gives ``3K`` channels per
    deformable group: the first ``2K`` are offsets, the last ``K`` go through a sigmoid to give
    ``dm_k`` in [0, 1] (torchvision's ``mask`` argument is used as given, so the sigmoid is here).
    That conv is zero-initialised as in the paper and the official code, so at init
    ``dp_k = 0`` and ``dm_k = 0.5``: a fresh module equals HALF the plain conv with ``self.weight``
    (plus bias), not the plain conv. Defaults: kernel 3, padding 1, dilation 1, no bias,
    ``deformable_groups=1`` (the official PyTorch/mmcv default).
    """

    modulated = True

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1, dilation: int = 1, deformable_groups: int = 1,
                 bias: bool = False):
        super().__init__(channels, out_channels, kernel_size, stride, padding, dilation,
                         deformable_groups, bias)
