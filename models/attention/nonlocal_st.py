"""Space-time non-local block (``nonlocal_st``): the video block of the non-local paper."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .nonlocal_block import conv_tokens, pool_tokens
from .registry import register_attention


@register_attention("nonlocal_st", family="spatiotemporal", kind="block",
                    aliases=("non_local_st", "nonlocal3d", "nl3d"))
class NonLocalST(nn.Module):
    """Space-time non-local block (embedded Gaussian).

    Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018,
    https://arxiv.org/abs/1711.07971

    On a clip map ``x`` of shape ``(N, C, T, H, W)``, every position ``i`` of the ``T*H*W`` grid
    attends to every position ``j`` of the clip (Eq. 1, Fig. 2):
    ``y_i = sum_j softmax_j(theta(x_i)^T phi(x_j)) g(x_j)``, ``z = BN(W_z y) + x`` (Eq. 6), with
    ``1x1x1`` convs ``theta, phi, g: C -> C/2`` and ``W_z: C/2 -> C``. The paper has no
    ``1/sqrt(d)`` in the softmax (Eq. 3): ``scale=False`` (default) passes ``scale=1.0`` to
    ``scaled_dot_product_attention``; ``scale=True`` gives mmaction2's / the Caffe2 code's
    ``USE_SCALE`` scaling by ``(C/2)^-1/2``. ``sub_sample=True`` (Sec. 3.3, used for every block
    of the paper) max-pools ``phi`` and ``g`` by ``1x2x2`` (space only, ``ceil_mode`` so odd maps
    keep every position). The BN after ``W_z`` starts with scale 0 (Sec. 4.1), so a fresh block
    is the identity; convs ``N(0, 0.01)`` with zero bias (official ``CONV_INIT_STD``); ``theta``,
    ``phi``, ``g`` carry biases, ``W_z`` none (the BN makes one redundant), as the 2-D ``nonlocal``.

    The attention runs fused (``F.scaled_dot_product_attention`` on contiguous ``q/k/v``): no
    ``THW x THW`` matrix is kept. ``num_frames`` (given by a per-frame backbone) checks the
    clip length; the block itself works for any ``T``.

    Paper layout (the paper's 5-block ResNet-50): 5 blocks after every other residual unit of
    res3 and res4, placement ``after_block``: units 2, 4 of ``layer2`` and 2, 4, 6 of ``layer3``,
    as in mmaction2's and GluonCV's I3D-NL5 ResNet-50 configs (``non_local=((0,0,0), (0,1,0,1),
    (0,1,0,1,0,1), (0,0,0))``). The 10-block model (every unit of
    res3 and res4) is ``EVERY: 1`` in a config (``every=1``).
    """

    placement = "after_block"
    paper_layout = Layout(stages=(2, 3), units="every_other", source=(
        "paper: 5 blocks, every other residual unit of res3 and res4"))

    def __init__(self, channels: int, num_frames: int | None = None, reduction: int = 2,
                 sub_sample: bool = True, scale: bool = False):
        super().__init__()
        inner = max(1, channels // reduction)
        self.num_frames, self.scale, self.inner_channels = num_frames, scale, inner
        self.sub_sample = sub_sample
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2), ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Conv3d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)
        for conv in (self.theta, self.phi, self.g, self.out):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def embed(self, x: torch.Tensor):
        """Queries ``(N, THW, C/2)``, keys and values ``(N, T h w, C/2)`` (pooled), contiguous:
        projected straight into token layout and pooled there (``self.pool``'s function)."""
        h, w = x.shape[3:]
        pool = (lambda t: pool_tokens(t, h, w)) if self.sub_sample else (lambda t: t)
        return conv_tokens(x, self.theta), pool(conv_tokens(x, self.phi)), pool(conv_tokens(x, self.g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"nonlocal_st expects a clip map (N,C,T,H,W), got shape {tuple(x.shape)}")
        n, _, t, h, w = x.shape
        if self.num_frames is not None and t != self.num_frames and not torch.jit.is_tracing():
            raise ValueError(f"nonlocal_st was built for {self.num_frames} frames, got {t}")
        q, k, v = self.embed(x)
        scale = q.shape[-1] ** -0.5 if self.scale else 1.0
        y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale)
        # W_z as the same 1x1 conv over (T*H, W) maps: conv3d's CPU backward holds one more
        # map-sized buffer than conv2d's
        y = y.squeeze(1).transpose(1, 2).reshape(n, -1, t * h, w)
        z = F.conv2d(y, self.out.weight.flatten(2, 3)).view(n, -1, t, h, w)
        return x + self.bn(z)
