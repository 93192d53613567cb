"""Class-specific residual attention (``csra``): a multi-label classification head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention

MAX_POOL_T = 99  # the official code's marker for T -> infinity (max pooling)
TEMPERATURES = {1: (1,), 2: (1, 99), 4: (1, 2, 4, 99), 6: (1, 2, 3, 4, 5, 99),
                8: (1, 2, 3, 4, 5, 6, 7, 99)}


@register_attention("csra", family="hybrid", kind="head", aliases=("mhcsra",))
class CSRA(nn.Module):
    """Class-specific residual attention head, with the paper's multi-head temperatures.

    Zhu, Wu, "Residual Attention: A Simple but Effective Method for Multi-Label Recognition",
    ICCV 2021, https://arxiv.org/abs/2108.02456

    Per head with temperature ``T`` and class ``i``, scores ``s_ij = m_i^T x_j / ||m_i||`` over
    positions ``j``: ``y_i = mean_j s_ij + lambda * sum_j softmax_j(T s_ij) s_ij`` (Sec. 3:
    ``m_i^T (g + lambda a^i)``; ``T = 99`` means ``T -> inf``, i.e. ``max_j s_ij``); heads are summed. Temperatures
    by ``num_heads``: 1: [1], 2: [1, 99], 4: [1, 2, 4, 99], 6: [1..5, 99], 8: [1..7, 99];
    ``temperatures`` overrides them. ``lam = 0.1`` and 1 head are the official defaults (VOC2007).
    Each head has its own bias-free 1x1 classifier, divided by its per-class norm as in the
    official code (``normalize=True``). The seed article's snippet is the special case
    ``temperatures=(99,)``, ``lam=0.2``, ``normalize=False``.
    """

    def __init__(self, channels: int, num_classes: int, num_heads: int = 1, lam: float = 0.1,
                 temperatures: tuple | None = None, normalize: bool = True):
        super().__init__()
        if temperatures is None:
            if num_heads not in TEMPERATURES:
                raise ValueError(f"num_heads must be one of {sorted(TEMPERATURES)} "
                                 f"(or pass temperatures), got {num_heads}")
            temperatures = TEMPERATURES[num_heads]
        # softmax heads first, then the max-pooling heads
        self.soft_temperatures = tuple(float(t) for t in temperatures if t != MAX_POOL_T)
        self.num_max_heads = sum(t == MAX_POOL_T for t in temperatures)
        self.num_heads, self.num_classes = len(temperatures), num_classes
        self.lam, self.normalize = lam, normalize
        self.classifier = nn.Conv2d(channels, self.num_heads * num_classes, 1, bias=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head class scores over positions, ``(B, heads, classes, HW)``."""
        weight = self.classifier.weight
        if self.normalize:
            weight = weight / weight.flatten(1).norm(dim=1)[:, None, None, None]
        s = F.conv2d(x, weight)
        return s.reshape(x.shape[0], self.num_heads, self.num_classes, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scores(x)
        n_soft = len(self.soft_temperatures)
        base = s.mean(-1).sum(1)
        soft = s[:, :n_soft]
        t = torch.tensor(self.soft_temperatures, device=x.device, dtype=s.dtype)[:, None, None]
        attention = (torch.softmax(soft * t, dim=-1) * soft).sum(-1).sum(1)
        if self.num_max_heads:
            attention = attention + s[:, n_soft:].amax(-1).sum(1)
        return base + self.lam * attention
