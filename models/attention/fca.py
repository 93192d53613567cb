"""FcaNet multi-spectral channel attention, with DCT filters built for the input's own size."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention

# The official "top" frequency ranking on a 7x7 DCT grid: (row, column) = (u, v) pairs.
TOP_FREQ_ROWS = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1)
TOP_FREQ_COLS = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3)


def scale_frequency(u: int, size: int) -> int:
    """Map a frequency of the 7-point grid to a map of ``size`` points: ``floor(u * size / 7)``.

    Equals the official ``u * (size // 7)`` when ``size`` is a multiple of 7 and always stays below
    ``size``, so tiny maps (4 columns of a 8x4 re-ID map) keep distinct frequencies.
    """
    return (u * size) // 7


@functools.lru_cache(maxsize=128)
def dct_basis(size: int, freqs: tuple[int, ...]) -> tuple[tuple[float, ...], ...]:
    """Orthonormal 1-D DCT-II vectors ``B[u][t] = c_u cos(pi u (t + 1/2) / N) / sqrt(N)``,
    ``c_0 = 1``, ``c_u = sqrt(2)``; plain floats so that the cache never holds traced tensors."""
    def value(u: int, t: int) -> float:
        scale = 1.0 if u == 0 else math.sqrt(2.0)
        return scale * math.cos(math.pi * u * (t + 0.5) / size) / math.sqrt(size)
    return tuple(tuple(value(u, t) for t in range(size)) for u in freqs)


@register_attention("fca", family="channel", kind="block", aliases=("fcanet",))
class FcaNet(nn.Module):
    """Multi-spectral channel attention (FcaNet).

    Qin, Zhang, Wu, Li, "FcaNet: Frequency Channel Attention Networks", ICCV 2021,
    https://arxiv.org/abs/2012.11879

    Channels are split into ``n = 16`` groups; group ``i`` is pooled with the 2-D DCT basis
    ``B_{u_i,v_i}(h, w) = B_{u_i}(h) B_{v_i}(w)`` (``Freq^i = sum_hw x B``, Eq. 6-8), the ``top16``
    frequencies of the paper's 7x7 ranking scaled to the map; then SE excitation without biases:
    ``y = x * sigmoid(W2 relu(W1 Freq))``, reduction 16. The (0, 0) basis is global average
    pooling times ``sqrt(HW)``, so ``num_freq=1`` is SE (without biases) up to that scale.

    The official code adaptive-average-pools every map to a fixed 56/28/14/7 grid; here the
    filters are built (and cached by size) for the input's own H and W, so odd and tiny maps
    work without resampling. Frequencies scale as ``floor(u * size / 7)`` (the official
    ``u * size // 7`` for multiples of 7).
    """

    placement = "post"

    def __init__(self, channels: int, reduction: int = 16, num_freq: int = 16):
        super().__init__()
        if not 1 <= num_freq <= len(TOP_FREQ_ROWS) or channels % num_freq:
            raise ValueError(f"fca: channels ({channels}) must be divisible by num_freq ({num_freq}), "
                             f"1 <= num_freq <= {len(TOP_FREQ_ROWS)}")
        self.num_freq = num_freq
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def frequencies(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (row, column) frequency of each channel group for an ``height x width`` map."""
        return [(scale_frequency(u, height), scale_frequency(v, width))
                for u, v in zip(TOP_FREQ_ROWS[:self.num_freq], TOP_FREQ_COLS[:self.num_freq])]

    def bases(self, height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row bases ``(n, H)`` and column bases ``(n, W)`` of the groups' DCT filters."""
        rows, cols = zip(*self.frequencies(height, width))
        as_tensor = functools.partial(torch.tensor, dtype=like.dtype, device=like.device)
        return as_tensor(dct_basis(height, rows)), as_tensor(dct_basis(width, cols))

    def dct_filters(self, height: int, width: int) -> torch.Tensor:
        """The 2-D filters ``(n, H, W)``, one per channel group."""
        rows, cols = self.bases(height, width, torch.empty(0))
        return rows[:, :, None] * cols[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        rows, cols = self.bases(h, w, x)
        groups = x.reshape(b, self.num_freq, c // self.num_freq, h, w)
        pooled = torch.einsum("bgch,gh->bgc", torch.einsum("bgchw,gw->bgch", groups, cols), rows)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled.reshape(b, c)))))
        return x * gate[:, :, None, None]
