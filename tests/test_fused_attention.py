"""Attention over many positions stays on a fused SDPA kernel (never the math path that builds the
full attention matrix): ``sdpa_kernel`` restricted to the fused backends raises "No available
kernel" whenever a call's inputs break their conditions (a transposed q/k/v, mixed dtypes under
autocast, head sizes the kernel does not take). Checked on CPU (flash kernel) and on CUDA
(flash / memory-efficient / cuDNN), in float32 and under bf16 autocast, forward and backward."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.attention import build_attention
from models.attention._ops import fused_attention

C = 16
# (name, kwargs, input shape): every module that calls scaled_dot_product_attention
CASES = [("nonlocal", {}, (2, C, 8, 8)), ("nonlocal", dict(mode="gaussian"), (2, C, 7, 9)),
         ("nonlocal", dict(scale=True, sub_sample=False), (2, C, 7, 9)), ("nonlocal_st", {}, (2, C, 3, 8, 8)),
         ("mhsa", {}, (2, C, 8, 8)), ("detr", dict(dropout=0.0), (2, C, 2, 4, 4)), ("gltr", {}, (2, C, 4, 4, 4)),
         ("sta", dict(self_attention=True), (2, C, 4, 8, 4))]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in CASES]


def run_fused_only(name, kwargs, shape, device, dtype, backends):
    m = build_attention(name, channels=C, **kwargs).to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    with sdpa_kernel(backends), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        y = m(x)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
def test_cpu_uses_the_flash_kernel(name, kwargs, shape, amp):
    run_fused_only(name, kwargs, shape, torch.device("cpu"), amp, [SDPBackend.FLASH_ATTENTION])


def test_a_transposed_query_is_refused_by_the_fused_kernel():
    """The check above can fail: a query that is a transposed view has no fused kernel."""
    q = torch.randn(2, 1, 8, 16)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), pytest.raises(RuntimeError, match="No available kernel"):
        torch.nn.functional.scaled_dot_product_attention(q.transpose(2, 3).contiguous().transpose(2, 3), q, q)


@pytest.mark.parametrize("dq,dv", [(4, 16), (16, 8), (8, 8)])
def test_padded_head_sizes_give_the_plain_attention(dq, dv):
    q, k, v = torch.randn(2, 1, 10, dq), torch.randn(2, 1, 6, dq), torch.randn(2, 1, 6, dv)
    expected = torch.softmax(q @ k.transpose(2, 3) / dq ** 0.5, -1) @ v
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        torch.testing.assert_close(fused_attention(q, k, v), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fused_attention(q, k, v, scale=1.0), torch.softmax(q @ k.transpose(2, 3), -1) @ v,
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name,kwargs,shape", CASES + [("detr", {}, (2, C, 2, 4, 4)), ("mhsa", dict(attn_dropout=0.1),
                                                                                          (2, C, 8, 8))],
                         ids=IDS + ["detr-dropout", "mhsa-attn_dropout"])
def test_cuda_uses_a_fused_kernel(name, kwargs, shape, amp):
    run_fused_only(name, kwargs, shape, torch.device("cuda"), amp,
                   [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION])
