"""Expectation-Maximization attention unit (EMANet)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention


def l2_normalize(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t / (1e-6 + ||t||)`` along ``dim`` (the official epsilon placement)."""
    return t / (1e-6 + t.norm(dim=dim, keepdim=True))


@register_attention("ema", family="spatial", kind="block", aliases=("emau", "emanet"))
class EMAUnit(nn.Module):
    """Expectation-Maximization attention unit (EMAU).

    Li, Zhong, Wu, Yang, Lin, Liu, "Expectation-Maximization Attention Networks for Semantic
    Segmentation", ICCV 2019, https://arxiv.org/abs/1907.13426

    ``X = conv1x1(x)`` (``C -> C``, with bias); from the bases ``mu (C, K)``, ``T`` EM steps:
    E-step ``Z = softmax_k(X^T mu)`` (Eq. 12), M-step ``mu_k = sum_n z_nk x_n / sum_n z_nk``
    (Eq. 13) followed by l2-normalisation of each basis; re-estimation ``X~ = mu Z^T``
    (Eq. 14); ``y = relu(x + BN(conv1x1(relu(X~))))`` (official EMAU: conv without bias + BN,
    residual, ReLU). Defaults ``K = 64`` bases, ``T = 3`` iterations, ``momentum = 0.9``.

    As in the official code the EM iterations run under ``torch.no_grad()``: the output of the
    attention carries no gradient, so ``conv_in`` gets none and the input only receives
    gradient through the residual (the authors found this slightly better, issue #14 of the
    official repository). The initial bases are a buffer, Kaiming-normal then l2-normalised;
    in training mode each forward updates them by the moving average of Eq. 15,
    ``mu0 <- momentum * mu0 + (1 - momentum) * mean_batch(mu_T)`` (the official ``train.py``
    does this outside the module, without re-normalising; under DDP each process updates its
    copy and rank 0's copy is broadcast). Placement: once at the end of a stage.
    The seed article lists EMANet with no code.
    """

    placement = "stage_end"
    paper_layout = Layout(stages=(4,), source="paper: EMAU on the backbone's last (res5) map")

    def __init__(self, channels: int, num_bases: int = 64, num_iters: int = 3, momentum: float = 0.9):
        super().__init__()
        self.num_iters, self.momentum = num_iters, momentum
        bases = torch.randn(1, channels, num_bases) * math.sqrt(2.0 / num_bases)
        self.register_buffer("bases", l2_normalize(bases, dim=1))
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        for conv in (self.conv_in, self.conv_out):   # official init: normal(0, sqrt(2 / fan_out))
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / channels))

    def expectation_maximization(self, feats: torch.Tensor):
        """Bases ``mu (B, C, K)`` after ``T`` steps and responsibilities ``z (B, N, K)``."""
        mu = self.bases.expand(feats.shape[0], -1, -1).to(feats.dtype)
        with torch.no_grad():
            for _ in range(self.num_iters):
                z = torch.bmm(feats.transpose(1, 2), mu).softmax(dim=2)      # E-step
                z_norm = z / (1e-6 + z.sum(dim=1, keepdim=True))
                mu = l2_normalize(torch.bmm(feats, z_norm), dim=1)          # M-step
        return mu, z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.conv_in(x).flatten(2)
        mu, z = self.expectation_maximization(feats)
        if self.training:
            with torch.no_grad():
                update = mu.mean(dim=0, keepdim=True).to(self.bases.dtype)
                self.bases.mul_(self.momentum).add_(update, alpha=1.0 - self.momentum)
        recon = F.relu(torch.bmm(mu, z.transpose(1, 2))).view_as(x)
        return F.relu(x + self.bn(self.conv_out(recon)))
