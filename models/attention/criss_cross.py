"""Criss-cross attention (CCNet), applied recurrently."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention


@register_attention("cc", family="spatial", kind="block", aliases=("ccnet", "criss_cross", "rcca"))
class CrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention (RCCA).

    Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic
    Segmentation", ICCV 2019, https://arxiv.org/abs/1811.11721

    ``Q, K = 1x1 conv(x): C -> C/8`` (``reduction=8``), ``V = 1x1 conv(x): C -> C``.
    For position ``u`` the energies ``d_{i,u} = Q_u^T Omega_{i,u}`` run over the ``H + W - 1``
    positions of its row and column (Eq. 1); one softmax over all of them (``u`` itself counted
    once: it is masked in the column direction, as the official ``INF`` term does);
    ``H'_u = gamma * sum_i A_{i,u} Phi_{i,u} + H_u`` (Eq. 2), ``gamma`` initialised to 0 so a
    fresh block is the identity (only ``gamma`` gets a gradient at init). The same weights are
    applied ``recurrence = 2`` times (RCCA, Sec. 3.2), so every position sees the whole map.
    Row and column energies are two batched matmuls of ``(B*H, W)`` and ``(B*W, H)`` layouts:
    memory ``O(HW (H + W))``, never ``(HW)^2``. The segmentation head's 3x3 convs around RCCA
    are not part of this block. Placement: once at the end of a stage.
    The seed article lists CCNet with no code.
    """

    placement = "stage_end"
    paper_layout = Layout(stages=(4,), source="paper: RCCA on the backbone's last (res5) map")

    def __init__(self, channels: int, reduction: int = 8, recurrence: int = 2):
        super().__init__()
        inner = max(1, channels // reduction)
        self.recurrence = recurrence
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """One criss-cross pass."""
        q, k = self.query(x), self.key(x)
        # gamma * (A V) == A (gamma V): scaling the value conv keeps no extra map alive for gamma
        v = F.conv2d(x, self.gamma * self.value.weight, self.gamma * self.value.bias)
        h = x.shape[2]
        # energy to the key in the same column at row g, and in the same row at column u
        e_col = torch.einsum("bchw,bcgw->bhwg", q, k)
        e_row = torch.einsum("bchw,bchu->bhwu", q, k)
        self_mask = torch.eye(h, dtype=torch.bool, device=x.device).unsqueeze(1)   # (h, 1, g)
        e_col = e_col.masked_fill(self_mask, float("-inf"))
        attn = torch.cat([e_col, e_row], dim=3).softmax(dim=3).to(v.dtype)
        a_col, a_row = attn.split([h, x.shape[3]], dim=3)
        out = torch.einsum("bhwg,bcgw->bchw", a_col, v) + torch.einsum("bhwu,bchu->bchw", a_row, v)
        return out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.attend(x)
        return x
