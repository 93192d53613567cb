"""Non-local blocks keep for backward only what backward needs, and stay exact: the token-layout
2x2 max pooling equals ``nn.MaxPool2d(2, ceil_mode=True)`` in values and gradients while keeping one
byte per output; training-mode gradients equal the explicit forms'; the saved activations stay
within a budget that the earlier layout (full-size pooled inputs, int64 indices) exceeded."""
import pytest
import torch
from torch import nn

from models.attention import build_attention
from models.attention._ops import token_max_pool_2x2
from models.attention._reference_longrange import REFERENCES
from models.attention._reference_spacetime import ref_nonlocal_st
from tests.attention_checks import randomize


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (2, 7, 5, 3), (1, 1, 1, 2)])
def test_token_pool_is_max_pool2d_in_values_and_gradients(shape):
    t = torch.randn(shape, dtype=torch.float64)
    t[0, 0, 0, 0] = t[0, 0, min(1, shape[2] - 1), 0]                     # a tie: the first one wins
    if shape[1] > 2:
        t[0, 2, 1, 1] = float("nan")                                     # NaN propagates and takes the gradient
    ours, theirs = t.clone().requires_grad_(True), t.clone().requires_grad_(True)
    got = token_max_pool_2x2(ours)
    want = nn.MaxPool2d(2, ceil_mode=True)(theirs.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert got.is_contiguous() and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    grad = torch.randn(got.shape, dtype=torch.float64)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(ours.grad, theirs.grad)
    with torch.no_grad():                                                # the plain path, same values
        torch.testing.assert_close(token_max_pool_2x2(t), want, rtol=0, atol=0, equal_nan=True)


def test_token_pool_keeps_one_byte_per_output():
    saved = []
    t = torch.randn(2, 8, 6, 4, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda s: saved.append(s) or s, lambda s: s):
        out = token_max_pool_2x2(t)
    assert [(s.dtype, s.numel()) for s in saved] == [(torch.uint8, out.numel())]


CASES = [("nonlocal", {}, (2, 16, 7, 9)), ("nonlocal", dict(sub_sample=False), (2, 16, 5, 6)),
         ("nonlocal", dict(mode="gaussian"), (2, 16, 7, 9)), ("nonlocal_st", {}, (2, 16, 3, 7, 5)),
         ("nonlocal_st", dict(sub_sample=False), (2, 16, 2, 4, 5))]


@pytest.mark.parametrize("name,kwargs,shape", CASES)
def test_training_gradients_equal_the_explicit_form(name, kwargs, shape):
    block = randomize(build_attention(name, channels=16, **kwargs), 0.3).double().train()
    ref = ref_nonlocal_st if name == "nonlocal_st" else REFERENCES["nonlocal"]
    x = torch.randn(shape, dtype=torch.float64)
    g = torch.randn(shape, dtype=torch.float64)
    grads = []
    for fn in (block, lambda t: ref(block, t)):
        block.zero_grad()
        xx = x.clone().requires_grad_(True)
        fn(xx).backward(g)
        grads.append([xx.grad] + [p.grad.clone() for p in block.parameters()])
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,shape", [("nonlocal", (4, 32, 8, 8)), ("nonlocal_st", (2, 32, 2, 8, 8))])
def test_saved_activations_stay_within_budget(name, shape):
    """With sub-sampling, backward needs: the queries (C/2 per position), the pooled keys and
    values (2 x C/8), the attention output and its channel-first copy for W_z (2 x C/2), W_z's output
    for BN (C), 1-byte pooling offsets and small statistics: about 2.3 C numbers per position
    beyond the input. Pooling channel-first maps kept both projections at full size and int64
    indices (3.8 C)."""
    block = build_attention(name, channels=32).train()
    x = torch.randn(shape, requires_grad=True)
    keep = {x.untyped_storage().data_ptr()} | {p.untyped_storage().data_ptr() for p in block.parameters()}
    saved = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in keep:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x)
    per_position = sum(saved.values()) / (x.numel() // 32) / 4            # float32 numbers per position
    assert per_position < 2.5 * 32, per_position / 32


def test_token_pool_refuses_a_second_derivative():
    t = torch.randn(1, 4, 4, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(token_max_pool_2x2(t).square().sum(), t, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad|double backward"):
        grad.sum().backward()
