"""Every registered attention module on CUDA against the CPU (skipped without a CUDA device).

Per module, with random parameters and BN statistics (so identity inits hide nothing): the
eval-mode output on CUDA equals the CPU's (float32, TF32 off, relative error <= 1e-4); a
train-mode forward + backward on CUDA gives finite gradients; under bf16 autocast the output is
finite and within a bf16-sized error of float32; channels_last input gives the float32 answer.
"""
import copy

import pytest
import torch

from attention_checks import project_attention, randomize
from engine.zoo_table import build_example, first_tensor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NAMES = project_attention()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def example(name):
    torch.manual_seed(0)
    module, x = build_example(name, channels=64, size=(16, 8), batch=2, num_classes=5)
    return randomize(module, 0.1).eval(), x


@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name, no_tf32):
    module, x = example(name)
    with torch.no_grad():
        want = first_tensor(module(x))
        got = first_tensor(copy.deepcopy(module).cuda()(x.cuda()))
    assert got.device.type == "cuda"
    assert relative_error(got, want) <= 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_cuda_train_step_and_bf16(name, no_tf32):
    module, x = example(name)
    module = module.cuda()
    with torch.no_grad():
        ref = first_tensor(module(x.cuda()))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = first_tensor(module(x.cuda()))
        assert torch.isfinite(low).all()
        assert relative_error(low, ref) <= 0.1
        if x.dim() == 4:
            cl = first_tensor(module(x.cuda().contiguous(memory_format=torch.channels_last)))
            assert relative_error(cl, ref) <= 1e-4
    module.train()
    xg = x.cuda().requires_grad_(True)
    y = first_tensor(module(xg))
    (y.float() * torch.randn_like(y.float())).sum().backward()
    assert torch.isfinite(xg.grad).all()
    for pname, p in module.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), pname
