"""Spatial Transformer (``stn``): a learned affine warp of the feature map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@register_attention("stn", family="spatial", kind="block", aliases=("spatial_transformer",))
class SpatialTransformer(nn.Module):
    """Spatial transformer module with an affine transformation.

    Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NeurIPS 2015,
    https://arxiv.org/abs/1506.02025

    ``theta = f_loc(U)`` (6 numbers); Eq. (1): source coordinates
    ``(x_s, y_s) = theta @ (x_t, y_t, 1)`` in normalised coordinates [-1, 1] for every target
    pixel; Eq. (5): bilinear sampling of ``U`` there (zeros outside). The last localisation layer
    starts at zero weight and the identity bias ``[1, 0, 0, 0, 1, 0]`` (regression to the identity
    transform at init, as in the paper's experiments), so a fresh module returns its input. ``affine_grid`` and ``grid_sample`` get the same ``align_corners``
    (default False: pixel centres at ``(2i + 1) / W - 1``, the identity warp is exact).
    The paper's localisation networks are task specific; here it is size agnostic:
    conv3x3-ReLU-conv3x3-ReLU (``loc_channels`` each) - global average pool - FC-ReLU - FC(6).
    theta and the grid are computed in float32 (bf16 coordinates would be off by ~0.1 pixel).
    """

    placement = "stage_end"
    paper_layout = Layout(stages=(1,), source=(
        "ours: after stage 1 (the paper puts transformers on the input or early maps, no ResNet)"))

    def __init__(self, channels: int, loc_channels: int = 32, align_corners: bool = False,
                 mode: str = "bilinear", padding_mode: str = "zeros"):
        super().__init__()
        self.align_corners, self.mode, self.padding_mode = align_corners, mode, padding_mode
        self.localization = nn.Sequential(
            nn.Conv2d(channels, loc_channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(loc_channels, loc_channels, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(loc_channels, loc_channels), nn.ReLU())
        self.theta = nn.Linear(loc_channels, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor(IDENTITY_THETA))

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 2, 3)`` affine matrices (float32), target -> source coordinates."""
        return self.theta(self.localization(x)).float().view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(self.affine(x), list(x.shape), align_corners=self.align_corners)
        return F.grid_sample(x, grid.to(x.dtype), mode=self.mode, padding_mode=self.padding_mode,
                             align_corners=self.align_corners)
