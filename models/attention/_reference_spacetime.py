"""Plain reference formulation of the space-time non-local block (``nonlocal_st``).

``ref(module, x) -> y`` recomputes ``module(x)`` from the module's own parameters with an
explicit ``THW x T'h'w'`` softmax matrix, hand-written 1x1x1 convs (einsum), per-frame 2x2
ceil-mode max pooling and BN by hand (batch statistics in training, running ones in eval, no
buffer updated). Written for clarity, not speed: the tests compare against it and
``tools/benchmark.py attention`` times the fused module against it. Not auto-imported.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._reference_longrange import batch_norm, max_pool_2x2_ceil, softmax


def conv1x1x1(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    y = torch.einsum("oc,bcthw->bothw", conv.weight[:, :, 0, 0, 0], x)
    return y if conv.bias is None else y + conv.bias[:, None, None, None]


def pool_space(x: torch.Tensor) -> torch.Tensor:
    """1x2x2 max pooling (ceil mode): each frame on its own."""
    n, c, t, h, w = x.shape
    y = max_pool_2x2_ceil(x.transpose(1, 2).reshape(n * t, c, h, w))
    return y.reshape(n, t, c, *y.shape[-2:]).transpose(1, 2)


def ref_nonlocal_st(m, x):
    n, c, t, h, w = x.shape
    pool = pool_space if isinstance(m.pool, nn.MaxPool3d) else (lambda v: v)
    theta = conv1x1x1(m.theta, x).flatten(2)                    # (N, d, THW)
    phi = pool(conv1x1x1(m.phi, x)).flatten(2)                  # (N, d, M)
    g = pool(conv1x1x1(m.g, x)).flatten(2)                      # (N, d, M)
    energy = theta.transpose(1, 2) @ phi                        # (N, THW, M): the whole matrix
    if m.scale:
        energy = energy / math.sqrt(theta.shape[1])
    y = (softmax(energy, dim=2) @ g.transpose(1, 2)).transpose(1, 2).reshape(n, -1, t, h, w)
    z = conv1x1x1(m.out, y)
    z = batch_norm(m.bn, z.reshape(n, c, t * h, w)).reshape(n, c, t, h, w)   # BN3d = BN over (N, T, H, W)
    return x + z


REFERENCES = {"nonlocal_st": ref_nonlocal_st}
