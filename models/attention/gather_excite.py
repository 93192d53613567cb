"""Gather-Excite (GE) blocks: the parameter-free GE-theta-minus and the parametric GE-theta(+)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._ops import spatial_mean
from .layout import Layout, spatial_size_of_stage
from .registry import register_attention

VARIANTS = ("theta_minus", "theta", "theta_plus")


@register_attention("ge", family="spatial", kind="block", aliases=("gather_excite",))
class GatherExcite(nn.Module):
    """Gather-Excite.

    Hu, Shen, Albanie, Sun, Vedaldi, "Gather-Excite: Exploiting Feature Context in Convolutional
    Neural Networks", NeurIPS 2018, https://arxiv.org/abs/1810.12348

    ``y = x * sigmoid(interp(xi_G(x)))``: the gather ``xi_G`` summarises each channel over a
    spatial extent ``e``, the excite step resizes the summary back (nearest neighbour) and gates.

    * ``theta_minus`` (default): parameter-free gather by average pooling. Global extent
      (``extent=0``, default) is ``sigmoid(GAP(x))`` per channel, the paper's headline operator
      (ResNet-50 + GE-theta-minus beats ResNet-101 with no extra parameters; the released
      ``RN50-GEPF`` model). A finite extent ``e`` pools with kernel ``2e-1``, stride ``e``.
    * ``theta``: gather by depth-wise convolutions, each followed by BN: ``log2(e)`` 3x3
      stride-2 convs (ReLU between) for a finite extent, or one depth-wise conv with a kernel the
      size of the map (``spatial_size`` required, as in the released ``RN50-GEP``).
    * ``theta_plus``: ``theta`` gather, then ReLU and an SE-style excite MLP (1x1 convs with
      biases, reduction 16) before the sigmoid (released ``RN50-GEPP``).

    The released models use global extents throughout; finite extents are the paper's ablation.
    In ResNet-50 (1000 classes) the three variants count 25,557,032 / 31,106,600 / 33,637,592
    parameters, as the released RN50-GEPF / GEP / GEPP prototxts do.
    Placed in the residual branch before the addition, like SE, in every residual unit (the
    paper layout passes each stage's map size as ``spatial_size``, which only the global
    parametric gathers use).
    """

    placement = "post"
    paper_layout = Layout(per_stage=spatial_size_of_stage, source=(
        "paper / released RN50-GE models: every residual unit, like SE"))

    def __init__(self, channels: int, variant: str = "theta_minus", extent: int = 0,
                 reduction: int = 16, spatial_size: int | tuple[int, int] | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"ge: variant must be one of {VARIANTS}, got {variant!r}")
        if extent < 0 or (extent and extent & (extent - 1)) or extent == 1:
            raise ValueError(f"ge: extent must be 0 (global) or a power of two >= 2, got {extent}")
        self.variant, self.extent = variant, extent
        self.spatial_size = None
        self.gather = None
        if variant != "theta_minus":
            self.gather = self._parametric_gather(channels, extent, spatial_size)
        self.excite = None
        if variant == "theta_plus":
            hidden = max(1, channels // reduction)
            self.excite = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                        nn.Conv2d(hidden, channels, 1))

    def _parametric_gather(self, channels, extent, spatial_size) -> nn.Sequential:
        if extent == 0:
            if spatial_size is None:
                raise ValueError("ge: a global parametric gather needs spatial_size (H, W)")
            size = (spatial_size, spatial_size) if isinstance(spatial_size, int) else tuple(spatial_size)
            self.spatial_size = size
            return nn.Sequential(nn.Conv2d(channels, channels, size, groups=channels, bias=False),
                                 nn.BatchNorm2d(channels))
        layers = []
        steps = int(math.log2(extent))
        for i in range(steps):
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels)]
            if i < steps - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def gathered(self, x: torch.Tensor) -> torch.Tensor:
        """The gathered context ``(B, C, h, w)`` before the excite step."""
        if self.gather is None:
            if self.extent == 0:
                return spatial_mean(x, keepdim=True)
            e = self.extent
            return F.avg_pool2d(x, 2 * e - 1, stride=e, padding=e - 1, count_include_pad=False)
        if self.spatial_size is not None and tuple(x.shape[-2:]) != self.spatial_size:
            raise ValueError(f"ge: built for maps of {self.spatial_size}, got {tuple(x.shape[-2:])}")
        return self.gather(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.gathered(x)
        if self.excite is not None:
            context = self.excite(context)
        if context.shape[-2:] != x.shape[-2:] and context.shape[-1] * context.shape[-2] != 1:
            context = F.interpolate(context, size=x.shape[-2:], mode="nearest")
        return x * torch.sigmoid(context)
