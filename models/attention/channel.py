"""Channel attention blocks: SE, GSoP, ECA, SRM, GCT (FcaNet lives in ``fca.py``).

All are ``(B,C,H,W) -> (B,C,H,W)`` blocks that rescale channels with a gate computed from
global statistics of the map, so they work on any spatial size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._ops import spatial_mean
from .layout import Layout, StageInfo
from .registry import register_attention


@register_attention("se", family="channel", kind="block")
class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation block.

    Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2019,
    https://arxiv.org/abs/1709.01507

    ``z = GAP(x)``, ``s = sigmoid(W2 relu(W1 z + b1) + b2)``, ``y = s * x`` (Eq. 2-4), with
    ``W1: C -> C/r``, ``W2: C/r -> C``. Default reduction ``r = 16``; fully connected layers with
    biases as in the released models. Placed in the residual branch before the addition.
    """

    placement = "post"
    paper_layout = Layout(source="paper Fig. 3 / official SE-ResNet-50: every residual unit")

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(B, C)`` in (0, 1)."""
        return torch.sigmoid(self.fc2(F.relu(self.fc1(spatial_mean(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, :, None, None]


def gsop_stage_kwargs(info: StageInfo) -> dict:
    """GSoP-Net1's reduction conv strides by 2 in the first stage only (official code)."""
    return {"reduce_stride": 2 if info.stage == 1 else 1}


@register_attention("gsop", family="channel", kind="block", aliases=("gsop1",))
class GSoP(nn.Module):
    """Global second-order pooling channel attention (the GSoP-Net1 block).

    Gao, Xie, Wang, Li, "Global Second-order Pooling Convolutional Networks", CVPR 2019,
    https://arxiv.org/abs/1811.12006

    ``z = ReLU(BN(conv1x1(ReLU(x))))`` reduces C to ``d = 128`` channels;
    ``Sigma = (1/M) z_c z_c^T`` is the ``d x d`` covariance over the ``M = HW`` positions
    (``z_c`` centred); ``s = sigmoid(fc(rowconv(rowBN(Sigma))))``; ``y = s * x``.
    The row-wise convolution is a grouped conv with kernel ``(d, 1)``: each covariance row gives
    4 outputs (``4d`` in all); ``fc`` is a 1x1 conv ``4d -> C``. Layout, biases and the ReLU on the
    input follow the official code (no activation between the row-wise conv and ``fc`` there).
    ``reduce_stride`` (official: 2 in the first ResNet stage, 1 elsewhere) defaults to 1.
    Paper layout (official GSoP-Net1, ``main.py`` / ``resnet.py``): one block in the LAST
    bottleneck of each of the four stages, ``reduce_stride=2`` in layer1; ResNet-50 28,285,224
    parameters with the classifier, the count of the official code's network (the
    papers' own tables not re-read here). (GSoP-Net1 also runs layer4 at stride 1, 14x14 maps; the
    backbone's ``last_stride`` decides that here: parameters are the same, FLOPs are not.)
    """

    placement = "post"
    paper_layout = Layout(units="last", per_stage=gsop_stage_kwargs, source=(
        "official code (GSoP-Net1): one block in the last unit of each stage, "
        "reduction conv stride 2 in layer1"))

    def __init__(self, channels: int, reduced_channels: int = 128, reduce_stride: int = 1):
        super().__init__()
        d = reduced_channels
        self.reduce = nn.Sequential(
            nn.Conv2d(channels, d, 1, stride=reduce_stride), nn.BatchNorm2d(d), nn.ReLU())
        self.row_bn = nn.BatchNorm2d(d)
        self.row_conv = nn.Conv2d(d, 4 * d, kernel_size=(d, 1), groups=d)
        self.fc = nn.Conv2d(4 * d, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.reduce(F.relu(x)).flatten(2)                  # (B, d, M)
        z = z - z.mean(dim=2, keepdim=True)
        cov = torch.matmul(z, z.transpose(1, 2)) / z.shape[2]  # (B, d, d)
        s = self.fc(self.row_conv(self.row_bn(cov.unsqueeze(3))))  # (B, C, 1, 1)
        return x * torch.sigmoid(s)


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive kernel: ``t = int(|(log2 C + b) / gamma|)``, the nearest odd ``k >= t``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register_attention("eca", family="channel", kind="block")
class ECA(nn.Module):
    """Efficient Channel Attention.

    Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
    Neural Networks", CVPR 2020, https://arxiv.org/abs/1910.03151

    ``w = sigmoid(conv1d_k(GAP(x)))`` (Eq. 14), a 1-D convolution without bias across the pooled
    channel vector, zero padding ``(k-1)/2``; ``k = psi(C)`` of Eq. 12 with ``gamma = 2, b = 1``
    (C = 64 -> 3, 256 -> 5, 512 -> 5, 2048 -> 7) unless ``kernel_size`` is given. In ResNet-50
    Eq. 12 gives k = 5, 5, 5, 7 per stage (86 parameters); the released ECA-Net50
    (``eca_resnet50_k3557``) uses 3, 5, 5, 7 (80, the abstract's figure): pass ``kernel_size=3``
    in stage 1 for that model.
    """

    placement = "post"
    paper_layout = Layout(source="paper / official ECA-ResNet: every residual unit")

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: int = 2, b: int = 1):
        super().__init__()
        k = kernel_size or eca_kernel_size(channels, gamma, b)
        if k % 2 == 0:
            raise ValueError(f"eca: kernel_size must be odd to keep C outputs, got {k}")
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(spatial_mean(x).unsqueeze(1)).squeeze(1)  # (B, C)
        return x * torch.sigmoid(y)[:, :, None, None]


@register_attention("srm", family="channel", kind="block")
class SRM(nn.Module):
    """Style-based Recalibration Module.

    Lee, Kim, Nam, "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
    ICCV 2019, https://arxiv.org/abs/1903.10829

    Style pooling ``t_c = [mean_c, std_c]``, ``std_c = sqrt(var_c + eps)`` with the unbiased
    variance over the H*W positions and ``eps = 1e-5`` as in the official code (it keeps the
    gradient finite on a flat channel: black frames, padding); style
    integration ``z_c = w_c . t_c`` (channel-wise FC: a grouped Conv1d, 2 weights per channel,
    no bias, zero-initialised as in the official code), ``g = sigmoid(BN(z))``, ``y = g * x``.
    At init ``g = 0.5`` everywhere. The BN normalises over the batch, so training needs B > 1.
    """

    placement = "post"
    paper_layout = Layout(source="paper (like SE) / official code: every residual unit")

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, groups=channels, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        nn.init.zeros_(self.cfc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = spatial_mean(x, keepdim=True)
        var = (x - mean).pow(2).sum((2, 3)) / (x.shape[2] * x.shape[3] - 1)  # unbiased, as torch.var
        std = (var + self.eps).sqrt()
        style = torch.stack((mean[:, :, 0, 0], std), dim=2)      # (B, C, 2)
        z = self.bn(self.cfc(style))                             # (B, C, 1)
        return x * torch.sigmoid(z).unsqueeze(3)


@register_attention("gct", family="channel", kind="block")
class GCT(nn.Module):
    """Gated Channel Transformation.

    Yang, Zhu, Wu, Yang, "Gated Channel Transformation for Visual Recognition", CVPR 2020,
    https://arxiv.org/abs/1909.11519

    l2 mode: ``s_c = alpha_c * sqrt(sum_hw x_c^2 + eps)`` (global context embedding),
    ``n_c = gamma_c * s_c / sqrt(mean_c s_c^2 + eps)`` (channel normalisation),
    ``y = x * (1 + tanh(n_c + beta_c))`` (gating). l1 mode uses ``sum |x|`` and ``mean |s|``.
    Init ``alpha = 1, gamma = 0, beta = 0``: 3C parameters and the identity at init (so
    ``alpha`` receives no gradient until ``gamma`` moves). ``eps = 1e-5``. The paper puts one GCT
    before every convolution of a residual branch (placement ``pre_convs``); the official
    GCT-ResNet-50 (``PyTorch/resnet.py``) also puts one before the stem conv (on the 3-channel
    image) and before each projection-shortcut conv: its paper layout, 53 GCTs in ResNet-50.
    """

    placement = "pre_convs"
    paper_layout = Layout(stem=True, shortcut=True, source=(
        "official GCT-ResNet-50: one GCT before every conv (the stem conv and the projection "
        "shortcuts included)"))

    def __init__(self, channels: int, eps: float = 1e-5, mode: str = "l2", after_relu: bool = False):
        super().__init__()
        if mode not in ("l1", "l2"):
            raise ValueError(f"GCT mode must be 'l1' or 'l2', got {mode!r}")
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps, self.mode, self.after_relu = eps, mode, after_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            embedding = (x.pow(2).sum((2, 3), keepdim=True) + self.eps).sqrt() * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(1, keepdim=True) + self.eps).sqrt()
        else:
            magnitude = x if self.after_relu else x.abs()
            embedding = magnitude.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (embedding.abs().mean(1, keepdim=True) + self.eps)
        return x * (1.0 + torch.tanh(embedding * norm + self.beta))
