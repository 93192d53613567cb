"""DRAW's selective read (``draw``): an N x N grid of Gaussian filters over the map."""
from __future__ import annotations

import torch
from torch import nn

from ._ops import spatial_mean
from .registry import register_attention


def draw_filterbank(center: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, n: int,
                    size: int, eps: float = 1e-8) -> torch.Tensor:
    """One axis of the filterbank, ``(B, n, size)``, rows summing to 1.

    Eq. (19)-(20): ``mu_i = center + (i - n/2 - 0.5) delta`` for ``i = 1..n``; Eq. (25)-(26):
    ``F[i, a] = exp(-(a - mu_i)² / (2 sigma²)) / Z`` over pixel coordinates ``a = 1..size``
    (1-based like ``i``, so that ``g = (size + 1) / 2`` is the exact centre).
    """
    i = torch.arange(1, n + 1, device=center.device, dtype=torch.float32)
    a = torch.arange(1, size + 1, device=center.device, dtype=torch.float32)
    mu = center.float()[:, None] + (i - n / 2 - 0.5) * delta.float()[:, None]       # (B, n)
    f = torch.exp(-(a - mu[:, :, None]) ** 2 / (2 * sigma2.float()[:, None, None]))  # (B, n, size)
    return f / f.sum(-1, keepdim=True).clamp_min(eps)


def draw_read(x: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, sigma2: torch.Tensor,
              delta: torch.Tensor, gamma: torch.Tensor, N: int) -> torch.Tensor:
    """Eq. (27): ``read = gamma * F_Y x F_X^T`` per channel, ``(B, C, H, W) -> (B, C, N, N)``.

    ``gx, gy`` (grid centre, 1-based pixel units), ``sigma2`` (filter variance), ``delta``
    (stride in pixels), ``gamma`` (intensity): all ``(B,)``.
    """
    f_x = draw_filterbank(gx, delta, sigma2, N, x.shape[3]).to(x.dtype)   # (B, N, W)
    f_y = draw_filterbank(gy, delta, sigma2, N, x.shape[2]).to(x.dtype)   # (B, N, H)
    out = torch.matmul(torch.matmul(f_y[:, None], x), f_x.transpose(1, 2)[:, None])
    return out * gamma.to(out.dtype)[:, None, None, None]


@register_attention("draw", family="spatial", kind="glimpse", aliases=("draw_read",))
class DrawReadAttention(nn.Module):
    """DRAW's read attention as a glimpse module.

    Gregor, Danihelka, Graves, Rezende, Wierstra, "DRAW: A Recurrent Neural Network For Image
    Generation", ICML 2015, https://arxiv.org/abs/1502.04623

    Eq. (21): ``(g~X, g~Y, log sigma², log delta~, log gamma) = W(h)``; Eq. (22)-(24):
    ``gX = (A+1)/2 (g~X + 1)``, ``gY = (B+1)/2 (g~Y + 1)``, ``delta = (max(A,B) - 1)/(N - 1) delta~``
    (``A`` = width, ``B`` = height); Eq. (25)-(27): see :func:`draw_read`. In DRAW ``h`` is the
    previous decoder state; here it is ``context`` when given (``(B, context_channels)``), else
    the global average of the input map (``context_channels = channels``). ``W`` is
    zero-initialised (our choice), so a fresh module reads the whole map: centred grid,
    ``sigma² = 1``, stride ``(max(A,B) - 1)/(N - 1)``, ``gamma = 1``.
    Default ``N = 12``: the 12x12 read glimpses of DRAW's cluttered-MNIST classification
    ("differentiable RAM") and SVHN settings.
    """

    def __init__(self, channels: int, glimpse_size: int = 12, context_channels: int | None = None):
        super().__init__()
        if glimpse_size < 2:
            raise ValueError("glimpse_size must be >= 2 (delta is scaled by 1 / (N - 1))")
        self.glimpse_size = glimpse_size
        self.to_params = nn.Linear(context_channels or channels, 5)
        nn.init.zeros_(self.to_params.weight)
        nn.init.zeros_(self.to_params.bias)

    def attention_params(self, x: torch.Tensor, context: torch.Tensor | None = None):
        """``(gx, gy, sigma2, delta, gamma)``, each ``(B,)`` float32, from Eq. (21)-(24)."""
        if context is None:
            context = spatial_mean(x)
        gx_t, gy_t, log_sigma2, log_delta_t, log_gamma = self.to_params(context).float().unbind(1)
        height, width = x.shape[2], x.shape[3]
        gx = (width + 1) / 2 * (gx_t + 1)
        gy = (height + 1) / 2 * (gy_t + 1)
        delta = (max(height, width) - 1) / (self.glimpse_size - 1) * torch.exp(log_delta_t)
        return gx, gy, torch.exp(log_sigma2), delta, torch.exp(log_gamma)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return draw_read(x, *self.attention_params(x, context), self.glimpse_size)
