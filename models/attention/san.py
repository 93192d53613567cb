"""SAN self-attention operators (pairwise and patchwise), CPU-friendly."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention
from .sasa import divisor_at_most


def reflect_indices(size: int, pad: int, device=None) -> torch.Tensor:
    """Indices of ``range(-pad, size + pad)`` reflected into ``[0, size)`` (edge not repeated).

    Equals ``ReflectionPad`` (the official kernels' ``pad_mode=1``) when ``pad < size`` and keeps
    reflecting back and forth on smaller maps, where ``ReflectionPad`` fails.
    """
    i = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    i = i.remainder(period)
    return torch.where(i < size, i, period - i)


def neighbourhoods(x: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, k*k, L)``: the reflection-padded ``k x k`` footprint of every
    output position (``L = ceil(H/s) * ceil(W/s)``, centres at ``(s*i, s*j)``)."""
    pad = kernel_size // 2
    padded = (x.index_select(2, reflect_indices(x.shape[2], pad, x.device))
              .index_select(3, reflect_indices(x.shape[3], pad, x.device)))
    cols = F.unfold(padded, kernel_size, stride=stride)
    return cols.view(x.shape[0], x.shape[1], kernel_size ** 2, cols.shape[-1])


def centres(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, 1, L)``: the features at the output positions."""
    return x[:, :, ::stride, ::stride].flatten(2).unsqueeze(2)


class _SANOperator(nn.Module):
    """Shared part: ``phi, psi`` (relation features, ``C -> C/16``), ``beta`` (values,
    ``C -> out``), and the aggregation ``y_i = sum_j w_ij (.) beta(x_j)`` where output channel
    ``c`` uses weight channel ``c mod (out / share_planes)`` (official ``Aggregation``)."""

    placement = "replace_conv2"
    paper_layout = Layout(source="ours: every 3x3 conv (SAN10/15/19 are networks of their own)")

    def __init__(self, channels: int, out_channels: int | None, kernel_size: int, share_planes: int,
                 rel_planes: int | None, stride: int):
        super().__init__()
        out_channels = out_channels or channels
        self.kernel_size, self.stride, self.out_channels = kernel_size, stride, out_channels
        self.rel_planes = rel_planes or max(1, channels // 16)
        self.share_planes = divisor_at_most(out_channels, share_planes)
        self.weight_channels = out_channels // self.share_planes
        self.phi = nn.Conv2d(channels, self.rel_planes, 1)
        self.psi = nn.Conv2d(channels, self.rel_planes, 1)
        self.beta = nn.Conv2d(channels, out_channels, 1)

    def aggregate(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x (B, out, H, W)``, ``weights (B, out/share, k*k, L)`` -> ``(B, out, H', W')``."""
        b, _, h, w = x.shape
        values = neighbourhoods(self.beta(x), self.kernel_size, self.stride)
        values = values.view(b, -1, self.weight_channels, *values.shape[2:])
        y = (weights.unsqueeze(1) * values).sum(3)
        return y.reshape(b, self.out_channels, -(-h // self.stride), -(-w // self.stride))


@register_attention("san_pairwise", family="spatial", kind="block", aliases=("san_pair",))
class SANPairwise(_SANOperator):
    """SAN pairwise self-attention operator (subtraction relation + position encoding).

    Zhao, Jia, Koltun, "Exploring Self-attention for Image Recognition", CVPR 2020,
    https://arxiv.org/abs/2004.13621

    ``y_i = sum_{j in R(i)} alpha(x_i, x_j) (.) beta(x_j)`` (Eq. 2) over the ``k x k`` footprint
    ``R(i)``, with ``alpha = softmax_j(gamma(delta(x_i, x_j)))`` (Sec. 3.1): relation
    ``delta = phi(x_i) - psi(x_j)`` (subtraction, the paper's best) concatenated with the
    difference ``p_i - p_j`` of position encodings (pixel coordinates in ``[-1, 1]`` through a
    trainable 1x1 conv), ``gamma`` = BN-ReLU-conv-BN-ReLU-conv producing ``out/share_planes``
    weight channels, shared by ``share_planes`` output channels.
    Defaults (paper / official ``model/san.py``): kernel (footprint) 7, ``share_planes = 8``
    (if it does not divide ``out_channels``, the largest divisor below it),
    ``rel_planes = channels // 16``; 1x1 convs with bias. Borders use reflection padding, as
    the official CUDA kernels (``pad_mode=1``); the official code is CUDA-only, this one runs
    anywhere (``unfold`` over a reflection-indexed map). ``stride`` evaluates the operator at
    every ``stride``-th position (official ``Subtraction``/``Aggregation`` semantics), giving
    the size of a strided 3x3 conv. Placement: replaces the 3x3 conv of a bottleneck.
    The seed article lists SAN with no code.
    """

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 7,
                 share_planes: int = 8, rel_planes: int | None = None, stride: int = 1):
        super().__init__(channels, out_channels, kernel_size, share_planes, rel_planes, stride)
        r = self.rel_planes
        self.position = nn.Conv2d(2, 2, 1)
        self.gamma = nn.Sequential(
            nn.BatchNorm2d(r + 2), nn.ReLU(),
            nn.Conv2d(r + 2, r, 1, bias=False), nn.BatchNorm2d(r), nn.ReLU(),
            nn.Conv2d(r, self.weight_channels, 1))

    def coordinates(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """``(1, 2, H, W)``: x then y pixel coordinates, each linearly spaced in ``[-1, 1]``."""
        ys = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([grid_x, grid_y]).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        relation = centres(self.phi(x), s) - neighbourhoods(self.psi(x), k, s)
        p = self.position(self.coordinates(x.shape[2], x.shape[3], x))
        p_rel = (centres(p, s) - neighbourhoods(p, k, s)).to(relation.dtype)
        p_rel = p_rel.expand(x.shape[0], -1, -1, -1)
        weights = self.gamma(torch.cat([relation, p_rel], dim=1)).softmax(dim=2)
        return self.aggregate(x, weights)


@register_attention("san_patchwise", family="spatial", kind="block", aliases=("san_patch",))
class SANPatchwise(_SANOperator):
    """SAN patchwise self-attention operator (concatenation relation).

    Zhao, Jia, Koltun, "Exploring Self-attention for Image Recognition", CVPR 2020,
    https://arxiv.org/abs/2004.13621

    ``y_i = sum_{j in R(i)} alpha(x_R(i))_j (.) beta(x_j)`` (Eq. 4): the weights for the whole
    footprint come from the patch, ``alpha = gamma([phi(x_i), psi(x_j) for j in R(i)])``
    (concatenation, the paper's best), ``gamma`` = BN-ReLU-conv-BN-ReLU-conv producing
    ``k^2 * out/share_planes`` weights, each shared by ``share_planes`` output channels; no
    softmax (official code). Defaults, borders (reflection), ``stride`` and placement as
    :class:`SANPairwise`. The seed article lists SAN with no code.
    """

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 7,
                 share_planes: int = 8, rel_planes: int | None = None, stride: int = 1):
        super().__init__(channels, out_channels, kernel_size, share_planes, rel_planes, stride)
        r, k2, wc = self.rel_planes, kernel_size ** 2, self.weight_channels
        self.gamma = nn.Sequential(
            nn.BatchNorm2d(r * (k2 + 1)), nn.ReLU(),
            nn.Conv2d(r * (k2 + 1), wc, 1, bias=False), nn.BatchNorm2d(wc), nn.ReLU(),
            nn.Conv2d(wc, wc * k2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, k, s = x.shape[0], self.kernel_size, self.stride
        centre = centres(self.phi(x), s)                                       # (B, r, 1, L)
        patch = neighbourhoods(self.psi(x), k, s)                              # (B, r, k2, L)
        patch = patch.reshape(b, -1, 1, patch.shape[-1])                      # (B, r*k2, 1, L)
        weights = self.gamma(torch.cat([centre, patch], dim=1))
        return self.aggregate(x, weights.view(b, self.weight_channels, k * k, -1))
