"""FcaNet multi-spectral channel attention, with DCT filters built for the input's own size."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention

# The official "top" frequency ranking on a 7x7 DCT grid: (row, column) = (u, v) pairs.
TOP_FREQ_ROWS = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1)
TOP_FREQ_COLS = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3)


# The official grid per ResNet stage (``c2wh``, keyed there by the stage's ``planes``).
STAGE_DCT_SIZE = {1: 56, 2: 28, 3: 14, 4: 7}


def dct_size_of_stage(info) -> dict:
    """The official c2wh grid of a ResNet stage (a named function: backbones stay picklable)."""
    return {"dct_size": STAGE_DCT_SIZE[info.stage]}


# The same for a standalone block of ResNet-50's widths: channels (4 * planes) -> dct_h = dct_w.
RESNET50_DCT_SIZE = {256: 56, 512: 28, 1024: 14, 2048: 7}


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

    As in the official code, every map is first adaptive-average-pooled to a fixed ``dct_size``
    grid whenever its size differs, and the DCT filters are built for that grid. The official
    ResNets use ``c2wh = {64: 56, 128: 28, 256: 14, 512: 7}`` keyed by the bottleneck width
    ``planes``: for ResNet-50 (``channels = 4 * planes``) that is 56/28/14/7 for 256/512/1024/2048
    channels, the default of a standalone block; any other width defaults to the 7x7 grid of the
    ranking itself. In a backbone the paper layout passes the grid by stage (56/28/14/7 for
    stages 1-4 of any depth, ResNet-18/34's 64/128/256/512 channels included). ``dct_size="input"`` (ours, not the official code) builds the filters for each
    input's own size instead of pooling. Frequencies scale as ``floor(u * size / 7)``: the
    official ``u * (size // 7)`` on the 7-multiple grids.
    """

    placement = "post"
    paper_layout = Layout(per_stage=dct_size_of_stage,
                          source="paper / official FcaNet-50: every residual unit, c2wh grid per stage")

    def __init__(self, channels: int, reduction: int = 16, num_freq: int = 16,
                 dct_size: int | tuple[int, int] | str | None = None):
        super().__init__()
        if dct_size is None:
            dct_size = RESNET50_DCT_SIZE.get(channels, 7)
        if isinstance(dct_size, int):
            dct_size = (dct_size, dct_size)
        if dct_size != "input" and not (len(dct_size) == 2 and all(int(d) >= 1 for d in dct_size)):
            raise ValueError(f"fca: dct_size must be an int, (h, w) or 'input', got {dct_size!r}")
        self.dct_size = dct_size if dct_size == "input" else tuple(int(d) for d in dct_size)
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
        b, c = x.shape[:2]
        pooled_map = x
        if self.dct_size != "input" and tuple(x.shape[2:]) != self.dct_size:
            pooled_map = F.adaptive_avg_pool2d(x, self.dct_size)
        h, w = pooled_map.shape[2:]
        rows, cols = self.bases(h, w, x)
        groups = pooled_map.reshape(b, self.num_freq, c // self.num_freq, h, w)
        pooled = torch.einsum("bgch,gh->bgc", torch.einsum("bgchw,gw->bgch", groups, cols), rows)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled.reshape(b, c)))))
        return x * gate[:, :, None, None]
