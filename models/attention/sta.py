"""STA: parameter-free spatial-temporal attention over frames x horizontal parts."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._ops import fused_attention
from .registry import register_attention


def part_membership(height: int, num_parts: int, device=None) -> torch.Tensor:
    """``(H, K)`` one-hot: row ``r`` belongs to horizontal part ``floor(r K / H)``."""
    rows = torch.arange(height, device=device)
    return F.one_hot(rows * num_parts // height, num_parts)


def frame_attention_maps(x: torch.Tensor, squared: bool = True, eps: float = 1e-12) -> torch.Tensor:
    """STA's spatial attention map of every frame, ``(N,C,T,H,W) -> (N,T,H,W)``:
    ``g(h,w) = sum_d f(h,w,d)^2 / sum_hw sum_d f(h,w,d)^2`` (Eq. 1, ``squared=True``), or with
    the channel l2 norm ``||f(h,w,:)||_2`` in place of the sum of squares (``squared=False``)."""
    x = x.float()
    energy = x.pow(2).sum(1) if squared else torch.linalg.vector_norm(x, dim=1)
    return energy / energy.sum((2, 3), keepdim=True).clamp_min(eps)


class SelfAttention2d(nn.Module):
    """The survey article's "basic self-attention module" (its snippet under STA).

    ``q, k = conv1x1(x)`` (``C -> C/8``), ``v = conv1x1(x)`` (``C -> C``), on ``x`` average
    pooled by ``ds``; ``softmax(q k^T / sqrt(C/8)) v``, upsampled (nearest) back to the map size
    and added to the input. The snippet comes from STANet (Chen & Shi, change detection,
    Remote Sensing 2020), not from Fu et al.'s STA, which has no learnable attention; here it is
    an option (``STA(self_attention=True)``), off by default. Differences from the snippet:
    sizes that ``ds`` does not divide are handled (adaptive pooling, upsampling to the exact
    size), and the attention runs through ``scaled_dot_product_attention``.
    """

    def __init__(self, channels: int, ds: int = 1):
        super().__init__()
        self.ds = ds
        inner = max(1, channels // 8)
        self.query, self.key = nn.Conv2d(channels, inner, 1), nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pooled = x
        if self.ds > 1:
            pooled = F.adaptive_avg_pool2d(x, (math.ceil(h / self.ds), math.ceil(w / self.ds)))
        hp, wp = pooled.shape[2:]
        q, k, v = (proj(pooled).flatten(2).transpose(1, 2).contiguous().unsqueeze(1)
                   for proj in (self.query, self.key, self.value))
        out = fused_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b, c, hp, wp)
        if (hp, wp) != (h, w):
            out = F.interpolate(out, size=(h, w), mode="nearest")
        return x + out


@register_attention("sta", family="spatiotemporal", kind="aggregator")
class STA(nn.Module):
    """Spatial-Temporal Attention, a clip aggregator ``(N,C,T,H,W) -> (N,D)``.

    Fu, Wang, Wei, Huang, "STA: Spatial-Temporal Attention for Large-Scale Video-based Person
    Re-Identification", AAAI 2019, https://arxiv.org/abs/1811.04129

    For frame ``n`` with map ``f_n`` (``C x H x W``, post-ReLU ResNet-50 features):

    * attention map (Eq. 1) ``g_n(h,w) = ||sum_d f_n(h,w,d)^2||_2 / sum_{h,w} ||sum_d f_n(h,w,d)^2||_2``:
      the l2 norm of a scalar is its magnitude, so ``g_n`` is the channel sum of squares,
      l1-normalised over the positions (``squared_norm=True``); ``squared_norm=False`` uses the
      channel l2 norm instead (this module's earlier reading);
    * ``K`` horizontal parts (row ``r`` in part ``floor(r K / H)``), part score (Eq. 2)
      ``s_{n,k} = sum_{(i,j) in part k} ||g_{n,k}(i,j)||_1``, normalised over the frames (Eq. 3):
      ``S(n,k) = s_{n,k} / sum_n ||s_{n,k}||_1`` (the 2-D attention score matrix);
    * fusion 1 (discriminative): part ``k`` of ``X1`` is part ``k`` of the frame with the highest
      ``S(n,k)``; fusion 2 (global): part ``k`` of ``X2`` is ``sum_n S(n,k) f_{n,k}``;
    * ``X = [X1; X2]`` (channels), global average pooling (``2C``), then an FC to ``embed_dim``;
    * inter-frame regularisation ``Reg = ||g_i - g_j||_F`` for two different frames ``i, j``
      drawn at random for every clip (training only), added as ``lambda * Reg`` to the loss:
      ``aux["losses"]["sta_reg"] = reg_weight * mean_clips(Reg)``.

    Paper values (as far as the copies reachable here show them; the full text could not be
    re-read): ResNet-50 backbone, ``N = 4`` frames per clip and ``K = 4`` parts (the ablations
    over N and K), Eq. 1-3, the two fusions, GAP then FC, softmax + triplet losses.
    Ours (the paper's values could not be read in the stored copies reachable here):
    ``reg_weight = 1.0`` (the paper's lambda), ``embed_dim = 1024`` (the width a public
    re-implementation, torchreid-style ``sta_p4``, uses after GAP; ``embed_dim=None`` keeps
    ``D = 2C``). Any clip length works, and the scores and fusions do not depend on the frame
    order. The attention has no parameters; the only learnable layer is the final FC. The
    survey article's snippet under STA is a self-attention block from another paper (STANet,
    see :class:`SelfAttention2d`); it is available as ``self_attention=True`` (on every frame
    map, before the scores), off by default as the paper has none. MARS (paper): rank-1 86.3,
    mAP 80.8.
    """

    any_length = True

    def __init__(self, channels: int, num_parts: int = 4, embed_dim: int | None = 1024,
                 reg_weight: float = 1.0, self_attention: bool = False, ds: int = 1,
                 squared_norm: bool = True, num_frames: int | None = None):
        super().__init__()
        self.num_parts, self.reg_weight, self.squared_norm = num_parts, reg_weight, squared_norm
        self.self_attention = SelfAttention2d(channels, ds) if self_attention else None
        self.fc = nn.Linear(2 * channels, embed_dim) if embed_dim else nn.Identity()
        self.out_channels = embed_dim or 2 * channels

    def scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Attention maps ``(N,T,H,W)`` -> frame-normalised part scores ``S`` ``(N,T,K)``."""
        member = part_membership(maps.shape[2], self.num_parts, maps.device).to(maps.dtype)
        # a broadcast sum, not a matmul: stays in float32 under autocast (argmax needs it)
        part_scores = (maps.sum(3)[..., None] * member).sum(2)
        return part_scores / part_scores.sum(1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        n, c, t, h, w = x.shape
        if self.self_attention is not None:
            frames = self.self_attention(x.transpose(1, 2).reshape(n * t, c, h, w))
            x = frames.reshape(n, t, c, h, w).transpose(1, 2)
        maps = frame_attention_maps(x, self.squared_norm)                     # (N, T, H, W)
        score = self.scores(maps)                                             # (N, T, K)
        member = part_membership(h, self.num_parts, x.device).to(x.dtype)
        parts = torch.einsum("ncthw,hk->ntkc", x, member)                     # part sums (N,T,K,C)
        best = score.argmax(1)                                                # (N, K)
        selected = parts.gather(1, best[:, None, :, None].expand(n, 1, self.num_parts, c)).squeeze(1)
        weighted = torch.einsum("ntk,ntkc->nkc", score.to(parts.dtype), parts)
        pooled = torch.cat((selected.sum(1), weighted.sum(1)), 1) / (h * w)   # GAP of [X1; X2]
        feat = self.fc(pooled)
        if not return_aux:
            return feat
        losses = {}
        if self.training and t > 1:
            losses["sta_reg"] = self.reg_weight * inter_frame_regularisation(maps)
        return feat, {"losses": losses, "features": {}}


def inter_frame_regularisation(maps: torch.Tensor) -> torch.Tensor:
    """Mean over clips of ``||g_i - g_j||_F`` for a random pair of different frames per clip."""
    n, t = maps.shape[:2]
    pair = torch.rand(n, t, device=maps.device).argsort(1)[:, :2]             # two distinct frames
    picked = maps.gather(1, pair[:, :, None, None].expand(n, 2, *maps.shape[2:]))
    return torch.linalg.vector_norm(picked[:, 0] - picked[:, 1], dim=(1, 2)).mean()
