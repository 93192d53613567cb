"""TAM: the temporal adaptive module of TANet."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention


@register_attention("tam", family="temporal", kind="block", aliases=("tanet",))
class TAM(nn.Module):
    """Temporal Adaptive Module.

    Liu, Wang, Wu, Qian, Lu, "TAM: Temporal Adaptive Module for Video Recognition", ICCV 2021,
    https://arxiv.org/abs/2005.06803

    On ``X`` of shape ``(N,C,T,H,W)`` with ``x = mean_HW(X)`` of shape ``(N,C,T)``:

    * local branch (location-sensitive importance map, Eq. 3):
      ``V = sigmoid(conv1d_1(ReLU(BN(conv1d_k(x)))))``, ``C -> C/beta`` with kernel 3, then
      ``C/beta -> C`` with kernel 1, no biases; ``Z = X * V`` (broadcast over ``H, W``);
    * global branch (location-invariant aggregation kernel, Eq. 5):
      ``Theta = softmax(FC(ReLU(BN(FC(x_c)))))`` per channel, ``T -> alpha*T -> K``, no biases;
    * ``Y[n,c,t] = sum_k Theta[n,c,k] * Z[n,c,t+k-K//2]`` (zero padded): a depth-wise temporal
      convolution with a kernel of its own for every sample and channel, run as one grouped
      convolution (``groups = N*C``) as in the official code.

    The importance map multiplies the input *before* the adaptive convolution (official code).
    Defaults ``alpha = 2``, ``beta = 4``, ``K = 3`` (paper and official code); the local
    branch's first kernel is ``local_kernel_size = 3``. ``num_frames`` (the segments ``T``,
    fixed per model: the global branch is an FC over time) defaults to TANet's 8.
    Placement ``pre_conv2``: after the first 1x1 conv + BN + ReLU of a bottleneck, before the
    3x3 conv. TANet reports 76.1% Kinetics-400 top-1 with 8 frames (ResNet-50).
    """

    placement = "pre_conv2"
    paper_layout = Layout(source="paper / official TANet-50: every residual unit")

    def __init__(self, channels: int, num_frames: int = 8, alpha: int = 2, beta: int = 4,
                 kernel_size: int = 3, local_kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0 or local_kernel_size % 2 == 0:
            raise ValueError("kernel sizes must be odd to keep the number of frames")
        self.num_frames, self.kernel_size = num_frames, kernel_size
        hidden = max(1, channels // beta)
        self.global_branch = nn.Sequential(
            nn.Linear(num_frames, num_frames * alpha, bias=False), nn.BatchNorm1d(num_frames * alpha),
            nn.ReLU(inplace=True), nn.Linear(num_frames * alpha, kernel_size, bias=False), nn.Softmax(-1))
        self.local_branch = nn.Sequential(
            nn.Conv1d(channels, hidden, local_kernel_size, padding=local_kernel_size // 2, bias=False),
            nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Conv1d(hidden, channels, 1, bias=False),
            nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        if not torch.jit.is_tracing() and t != self.num_frames:
            raise ValueError(f"TAM was built for {self.num_frames} frames, got {t}")
        pooled = x.mean((3, 4))                                                # (N, C, T)
        kernels = self.global_branch(pooled.reshape(n * c, t))                 # (N*C, K)
        excited = x * self.local_branch(pooled)[..., None, None]               # (N, C, T, H, W)
        weight = kernels.reshape(n * c, 1, self.kernel_size, 1)
        y = F.conv2d(excited.reshape(1, n * c, t, h * w), weight, padding=(self.kernel_size // 2, 0),
                     groups=n * c)
        return y.reshape(n, c, t, h, w)
