"""Shared checks for the attention-module tests (not a test file itself)."""
from __future__ import annotations

import torch
from torch import nn


def randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Random parameters and BN running statistics, so that zero/identity inits hide nothing."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module


def check_gradients(module: nn.Module, x: torch.Tensor, zero_at_init: tuple[str, ...] = ()):
    """Backprop a random projection of the output; the input and every parameter get a finite
    gradient, non-zero except the parameters named in ``zero_at_init`` (which must be zero)."""
    module.train()
    x = x.clone().requires_grad_(True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        if name in zero_at_init:
            assert torch.count_nonzero(p.grad) == 0, f"{name} should get no gradient at init"
        else:
            assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


def check_shape_dtype_determinism(module: nn.Module, x: torch.Tensor):
    module.eval()
    with torch.no_grad():
        y1, y2 = module(x), module(x)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def project_attention(**filters) -> list[str]:
    """The project's registered modules; test files register private blocks named ``_...``
    (collected before or after, depending on which test files run)."""
    from models.attention import list_attention
    return [n for n in list_attention(**filters) if not n.startswith("_")]
