"""GLTR: global-local temporal representation (dilated temporal pyramid + temporal self-attention)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention


@register_attention("gltr", family="temporal", kind="aggregator")
class GLTR(nn.Module):
    """Global-Local Temporal Representation, a clip aggregator ``(N,C,T,H,W) -> (N,D)``.

    Li, Wang, Tian, Gao, Zhang, "Global-Local Temporal Representations For Video Person
    Re-Identification", ICCV 2019, https://arxiv.org/abs/1908.10049

    * frame features ``f_t = FC(GAP(X_t))``, ``C -> d``, ``d = 128`` (paper Sec. 4.2: "a
      d=128-dim feature from each video frame"; the released code's ``feat`` layer, kaiming
      fan-out, bias 0); ``embed_dim=None`` keeps ``d = C``;
    * Dilated Temporal Pyramid (Sec. 3.2): ``N`` parallel temporal convolutions, width ``w = 3``,
      dilation ``r_k``, ``d -> d`` each, no bias, zero padding ``r_k`` so that every branch keeps
      ``T`` positions: ``f^(r)_t = sum_i W^(r)_i f_{t + r (i - 1)}``;
      ``R = [F^(r_1); ...; F^(r_N)]``, ``N d`` channels;
    * Temporal Self-Attention (Sec. 3.3): ``B = theta(R)``, ``C = phi(R)``, ``R' = g(R)`` (1x1
      convs ``N d -> N d / alpha``, ``alpha = 2`` as the released code's inner width; the paper's
      value not re-read, see (1)), ``M = softmax(B^T C)`` over the ``T`` positions (no
      ``1/sqrt(d)``, as the released code), ``F = W * (R' M) + R`` with ``W`` a 1x1 conv + BN whose
      scale and shift start at 0 (released code), so TSA starts as the identity; run through
      ``scaled_dot_product_attention`` with ``scale=1``;
    * ``GLTR = mean_t F_t`` (``out_channels = N d``).

    Which values come from where:

    ==========================  ==============================  ================================
    value                       ``variant="paper"`` (default)   ``variant="official"``
    ==========================  ==============================  ================================
    dilations                   (1, 2, 4): ``r_k = 2^(k-1)``,   (1, 2, 3) (``feat1-3`` in the
                                our reading of Sec. 3.2, not    released ``resnet.py``)
                                re-checked here (1)
    undilated ``f`` in ``R``    no, ``R`` = the N branches (1)  yes (``x0``): 4 x 128 = 512-d
    output size                 N d = 384                       512
    dropout in TSA              none                            none
    frames per clip             16 adjacent (Sec. 4.2)          16 consecutive (``frames=16``);
                                                                the whole tracklet at test
    ==========================  ==============================  ================================

    (1) the stored copies of the paper reachable while writing this hold its abstract and the
    implementation paragraph (d = 128, 16 adjacent frames, batch 10, softmax loss, 256x128) but
    not Sec. 3.2-3.3, so the dilations and ``alpha`` could not be re-checked there; the
    equations above follow the released code where the paper could not be read. ``dilations``, ``keep_input``
    and ``dropout`` override a variant; ``dropout`` (default 0, as both) would act on the TSA
    branch before the residual sum (the released code's only dropout, 0.5, sits in its
    training classifier head). Init as the released code: DTP weights ``N(0, 0.001)``. Any
    clip length works; the output depends on the frame order. MARS (paper): rank-1 87.0,
    mAP 78.5.
    """

    any_length = True
    VARIANTS = {"paper": dict(dilations=(1, 2, 4), keep_input=False),
                "official": dict(dilations=(1, 2, 3), keep_input=True)}

    def __init__(self, channels: int, embed_dim: int | None = 128, variant: str = "paper",
                 dilations: Sequence[int] | None = None, kernel_size: int = 3, reduction: int = 2,
                 dropout: float = 0.0, keep_input: bool | None = None, num_frames: int | None = None):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"gltr: variant must be one of {tuple(self.VARIANTS)}, got {variant!r}")
        self.variant = variant
        dilations = tuple(dilations) if dilations is not None else self.VARIANTS[variant]["dilations"]
        keep_input = keep_input if keep_input is not None else self.VARIANTS[variant]["keep_input"]
        d = embed_dim or channels
        self.embed = nn.Linear(channels, d) if embed_dim else nn.Identity()
        if embed_dim:
            nn.init.kaiming_normal_(self.embed.weight, mode="fan_out")
            nn.init.zeros_(self.embed.bias)
        self.pyramid = nn.ModuleList(
            nn.Conv1d(d, d, kernel_size, dilation=r, padding=r * (kernel_size // 2), bias=False)
            for r in dilations)
        for conv in self.pyramid:
            nn.init.normal_(conv.weight, std=0.001)
        self.keep_input = keep_input
        width = d * (len(dilations) + int(keep_input))
        inner = max(1, width // reduction)
        self.theta, self.phi, self.g = (nn.Linear(width, inner) for _ in range(3))
        self.w = nn.Linear(inner, width)
        self.w_bn = nn.BatchNorm1d(width)
        nn.init.zeros_(self.w_bn.weight)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = width

    def pyramid_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,C,T,H,W) -> R`` as ``(N, T, N_branches * d)``."""
        frames = self.embed(x.mean((3, 4)).transpose(1, 2))                  # (N, T, d)
        seq = frames.transpose(1, 2)                                          # (N, d, T)
        branches = ([seq] if self.keep_input else []) + [conv(seq) for conv in self.pyramid]
        return torch.cat(branches, 1).transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.pyramid_features(x)                                          # (N, T, width)
        q, k, v = (proj(r).unsqueeze(1) for proj in (self.theta, self.phi, self.g))
        attended = F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)
        branch = self.w_bn(self.w(attended).transpose(1, 2)).transpose(1, 2)
        return (r + self.dropout(branch)).mean(1)
