"""Long-range (self-)attention: nonlocal, cc, ema, sasa, san_pairwise, san_patchwise, mhsa, detr.

Modules are compared with the explicit formulations of ``_reference_longrange`` (dense masked
attention matrices, neighbour index tables, hand-written layers) and, on tiny maps, with
brute-force loops over positions written here.
"""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from models.attention import build_attention, get_attention_class
from models.attention._reference_longrange import REFERENCES
from models.attention.san import reflect_indices
from models.attention.transformer import sine_encoding_1d
from models.backbones.insertion import ResidualUnit

C = 16
BLOCKS = ["nonlocal", "cc", "ema", "sasa", "san_pairwise", "san_patchwise", "mhsa"]
# (name, kwargs) compared with the references, in train and eval mode
CASES = ([("nonlocal", dict(mode=m, sub_sample=s)) for m in ("embedded_gaussian", "gaussian", "dot", "concat")
          for s in (False, True)]
         + [("nonlocal", dict(scale=True)), ("cc", {}), ("cc", dict(recurrence=1)), ("ema", dict(num_bases=6)),
            ("sasa", {}), ("sasa", dict(stride=2, out_channels=24)), ("san_pairwise", {}),
            ("san_pairwise", dict(stride=2, out_channels=32)), ("san_patchwise", {}),
            ("san_patchwise", dict(stride=2)), ("mhsa", {}), ("mhsa", dict(pos_size=(7, 5)))])


def make(name, channels=C, **kwargs):
    if name == "detr":
        kwargs.setdefault("dim_feedforward", 32)
    return build_attention(name, channels=channels, **kwargs)


def randomize(module, scale=0.3):
    """Random parameters and BN statistics, so that zero inits (gamma, BN weight) hide nothing."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, scale)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module


def sample(name, *hw, batch=2, channels=C, dtype=torch.float32):
    shape = (batch, channels, 2, *hw) if name == "detr" else (batch, channels, *hw)
    return torch.randn(shape, dtype=dtype)


def out_shape(module, x):
    if module.kind == "aggregator":
        return (x.shape[0], module.out_channels)
    return x.shape


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", BLOCKS + ["detr"])
def test_shape_dtype_determinism_any_size(name):
    m = make(name).eval()
    for hw in [(7, 7), (15, 9), (8, 4), (16, 8), (32, 16), (1, 1)]:
        x = sample(name, *hw, batch=1)
        with torch.no_grad():
            y1, y2 = m(x), m(x)
        assert y1.shape == out_shape(m, x) and y1.dtype == x.dtype
        assert torch.isfinite(y1).all() and torch.equal(y1, y2)


@pytest.mark.parametrize("name", BLOCKS + ["detr"])
def test_bf16_autocast_close_to_fp32(name):
    m = randomize(make(name), 0.2).eval()
    x = sample(name, 9, 7)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
    assert y.shape == ref.shape and torch.isfinite(y).all()
    assert (y.float() - ref).norm() / ref.norm() < 0.05


# Parameters whose gradient is zero by construction (layouts kept as the papers' code has them):
# a bias on the keys (or on logits) shifts all logits of a query equally and the softmax
# cancels it; a bias feeding a training-mode BN only shifts channels the BN re-centres;
# SAN's position-conv bias cancels in p_i - p_j; EMA runs its EM iterations under no_grad
# (official code), so conv_in gets no gradient at all; DETR's first self-attention sees the
# zero targets as values, so its value weight gets none either (as in DETR).
NO_GRAD = {"nonlocal": ("phi.bias", "g.bias"),
           "cc": ("key.bias",),
           "ema": ("conv_in.weight", "conv_in.bias"),
           "san_pairwise": ("phi.bias", "psi.bias", "position.bias", "gamma.5.bias"),
           "san_patchwise": ("phi.bias", "psi.bias"),
           "detr": ("layers.0.self_attn.v_proj.weight",)
           + tuple(f"layers.{i}.{a}.k_proj.bias" for i in range(2) for a in ("self_attn", "cross_attn"))}


@pytest.mark.parametrize("name", BLOCKS + ["detr"])
def test_gradients_reach_input_and_parameters(name):
    m = randomize(make(name)).double().train()
    x = sample(name, 9, 7, batch=3, dtype=torch.float64).requires_grad_(True)
    y = m(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        if pname in NO_GRAD.get(name, ()):
            assert p.grad is None or p.grad.abs().max() < 1e-10, pname
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 1e-6, pname


@pytest.mark.parametrize("name, kwargs", [("nonlocal", {}), ("nonlocal", dict(mode="concat")), ("cc", {}),
                                          ("ema", {}), ("sasa", dict(stride=2)), ("san_pairwise", {}),
                                          ("san_patchwise", dict(stride=2)), ("mhsa", {}), ("detr", {})])
def test_export(name, kwargs):
    m = make(name, **kwargs).eval()
    x = sample(name, 9, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, (x,))
    assert torch.allclose(traced(x), m(x), atol=1e-6)
    if name in ("sasa", "detr"):   # torch.export too (all modules pass; slow, so two here)
        exported = torch.export.export(m, (x,))
        assert torch.allclose(exported.module()(x), m(x), atol=1e-6)


def test_registry_kinds_and_placements():
    expect = {"nonlocal": "after_block", "cc": "stage_end", "ema": "stage_end", "sasa": "replace_conv2",
              "san_pairwise": "replace_conv2", "san_patchwise": "replace_conv2", "mhsa": "after_block"}
    for name, placement in expect.items():
        cls = get_attention_class(name)
        assert (cls.family, cls.kind, cls.placement) == ("spatial", "block", placement)
    assert get_attention_class("detr").kind == "aggregator"


@pytest.mark.parametrize("name", ["sasa", "san_pairwise", "san_patchwise"])
def test_replaces_the_strided_3x3_conv_of_a_bottleneck(name):
    down = nn.Sequential(nn.Conv2d(32, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64))
    unit = ResidualUnit(Bottleneck(32, 16, stride=2, downsample=down), name, "replace_conv2", 1, {})
    strided = unit.attn.pool.stride == 2 if name == "sasa" else unit.attn.stride == 2
    assert strided and unit.attn.out_channels == 16
    y = unit(torch.randn(2, 32, 15, 9))                  # odd map: sizes must match the shortcut
    assert y.shape == (2, 64, 8, 5)


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name, kwargs", CASES)
def test_matches_reference(name, kwargs, training):
    m = randomize(make(name, **kwargs)).double().train(training)
    for hw in [(7, 7), (9, 5), (8, 4)]:
        x = sample(name, *hw, dtype=torch.float64)
        with torch.no_grad():
            expected = REFERENCES[name](m, x)   # before the module: EMA updates its bases in training
            y = m(x)
        torch.testing.assert_close(y, expected, rtol=1e-7, atol=1e-7)


def test_detr_matches_reference():
    m = randomize(make("detr", dropout=0.0)).double()
    x = sample("detr", 5, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), REFERENCES["detr"](m, x))
    m = randomize(make("detr", reduce="concat", num_queries=3, num_layers=1, dropout=0.0)).double()
    assert m.out_channels == 3 * C
    torch.testing.assert_close(m(x), REFERENCES["detr"](m, x))


# ----------------------------------------------------------------------------- non-local
def test_nonlocal_paper_facts_and_identity_at_init():
    m = make("nonlocal", channels=32)
    assert m.inner_channels == 16 and m.mode == "embedded_gaussian" and not m.scale
    assert isinstance(m.pool, nn.MaxPool2d) and m.pool.kernel_size == 2            # sub-sampling
    assert torch.count_nonzero(m.bn.weight) == 0
    # theta, phi, g (with bias) + W_z (no bias, BN follows) + BN
    assert sum(p.numel() for p in m.parameters()) == 3 * (32 * 16 + 16) + 16 * 32 + 2 * 32
    x = torch.randn(2, 32, 9, 7, requires_grad=True)
    y = m.train()(x)
    torch.testing.assert_close(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert m.bn.weight.grad.abs().sum() > 0
    assert torch.count_nonzero(m.theta.weight.grad) == 0 and torch.count_nonzero(m.out.weight.grad) == 0


def test_nonlocal_concat_brute_force():
    """relu(w_f^T [theta_i, phi_j]) / N with an explicit concatenation per pair."""
    m = randomize(make("nonlocal", channels=8, mode="concat", sub_sample=False)).double().eval()
    x = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    theta, phi, g = (conv(x)[0].flatten(1) for conv in (m.theta, m.phi, m.g))
    n = theta.shape[1]
    y = torch.zeros_like(g)
    for i in range(n):
        for j in range(n):
            f = torch.relu(m.concat_project(torch.cat([theta[:, i], phi[:, j]])))
            y[:, i] += f * g[:, j] / n
    expected = x + m.bn(m.out(y.view(1, -1, 3, 4)))
    torch.testing.assert_close(m(x), expected)


def test_nonlocal_concat_gradients_match_dense_form():
    """The sort-based concat relation differentiates like the dense relu matrix."""
    m = randomize(make("nonlocal", channels=8, mode="concat")).double()
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    w = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    grads = []
    for fn in (m, lambda t: REFERENCES["nonlocal"](m, t)):
        m.zero_grad()
        xx = x.clone().requires_grad_(True)
        (fn(xx) * w).sum().backward()
        grads.append([xx.grad] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- criss-cross
def test_cc_paper_facts_and_identity_at_init():
    m = make("cc", channels=32)
    assert m.query.out_channels == m.key.out_channels == 4 and m.recurrence == 2
    x = torch.randn(2, 32, 7, 5, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert m.gamma.grad.abs() > 0 and torch.count_nonzero(m.value.weight.grad) == 0


def test_cc_brute_force_loops():
    m = randomize(make("cc", channels=8)).double()
    x = torch.randn(1, 8, 4, 3, dtype=torch.float64)
    h, w = 4, 3
    expected = x.clone()
    for _ in range(2):
        q, k, v = m.query(expected)[0], m.key(expected)[0], m.value(expected)[0]
        out = torch.zeros_like(expected[0])
        for i in range(h):
            for j in range(w):
                cross = sorted({(i, u) for u in range(w)} | {(g, j) for g in range(h)})
                assert len(cross) == h + w - 1
                energy = torch.stack([q[:, i, j] @ k[:, a, b] for a, b in cross])
                attn = torch.softmax(energy, 0)
                out[:, i, j] = sum(attn[n] * v[:, a, b] for n, (a, b) in enumerate(cross))
        expected = m.gamma * out[None] + expected
    torch.testing.assert_close(m(x), expected)


def test_cc_uniform_energies_average_the_cross():
    """With zero query/key weights all H + W - 1 energies are equal: a plain average."""
    m = randomize(make("cc", channels=8, recurrence=1)).double()
    with torch.no_grad():
        for conv in (m.query, m.key):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.randn(1, 8, 5, 4, dtype=torch.float64)
    v = m.value(x)
    cross_sum = v.sum(2, keepdim=True) + v.sum(3, keepdim=True) - v      # self counted once
    torch.testing.assert_close(m(x), x + m.gamma * cross_sum / (5 + 4 - 1))


def test_cc_recurrence_two_reaches_every_position():
    x = torch.randn(1, 8, 5, 4, dtype=torch.float64)
    for recurrence, reaches_all in ((1, False), (2, True)):
        m = randomize(make("cc", channels=8, recurrence=recurrence)).double()
        jac = torch.autograd.functional.jacobian(lambda t: m(t)[0, :, 0, 0], x)   # (C, 1, C, H, W)
        depends = jac.abs().sum((0, 1, 2)) > 0
        assert bool(depends.all()) == reaches_all
        assert depends[0].all() and depends[:, 0].all()


# ----------------------------------------------------------------------------- EMA
def test_ema_paper_facts():
    m = make("ema", channels=32)
    assert m.bases.shape == (1, 32, 64) and m.num_iters == 3 and m.momentum == 0.9
    torch.testing.assert_close(m.bases.norm(dim=1), torch.ones(1, 64), atol=1e-5, rtol=0)
    assert "bases" in dict(m.named_buffers()) and "bases" not in dict(m.named_parameters())


def test_ema_single_basis_by_hand():
    """K = 1: every responsibility is 1, so mu = l2norm(mean of the features) after any T."""
    m = randomize(make("ema", channels=8, num_bases=1)).double().eval()
    x = torch.randn(2, 8, 5, 3, dtype=torch.float64)
    feats = m.conv_in(x).flatten(2)
    mu = feats.sum(2) / (1e-6 + 15)
    mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
    recon = torch.relu(mu[:, :, None, None].expand_as(x))
    torch.testing.assert_close(m(x), torch.relu(x + m.bn(m.conv_out(recon))))


def test_ema_bases_moving_average_in_training_only():
    from models.attention._reference_longrange import ema_em
    m = randomize(make("ema", channels=8, num_bases=4)).double()
    with torch.no_grad():
        m.bases.copy_(F.normalize(torch.randn(1, 8, 4, dtype=torch.float64), dim=1))
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    before = m.bases.clone()
    m.eval()(x)
    assert torch.equal(m.bases, before)
    mu, _ = ema_em(m, x)
    m.train()(x)
    torch.testing.assert_close(m.bases, 0.9 * before + 0.1 * mu.mean(0, keepdim=True))


# ----------------------------------------------------------------------------- SASA
def sasa_brute_force(m, x):
    b, _, h, w = x.shape
    r, heads = m.kernel_size // 2, m.heads
    q, k, v = (conv(x).view(b, heads, -1, h, w) for conv in (m.query, m.key, m.value))
    dr = m.row_dim
    y = torch.zeros(b, heads, q.shape[2], h, w, dtype=x.dtype)
    for n in range(b):
        for hd in range(heads):
            for i in range(h):
                for j in range(w):
                    qq = q[n, hd, :, i, j]
                    logits, values = [], []
                    for a in range(i - r, i + r + 1):
                        for c in range(j - r, j + r + 1):
                            if 0 <= a < h and 0 <= c < w:   # outside the map: masked
                                rel = torch.cat([m.rel_rows[hd, :, a - i + r], m.rel_cols[hd, :, c - j + r]])
                                logits.append(qq @ k[n, hd, :, a, c] + qq @ rel)
                                values.append(v[n, hd, :, a, c])
                    attn = torch.softmax(torch.stack(logits), 0)
                    y[n, hd, :, i, j] = (attn[:, None] * torch.stack(values)).sum(0)
    y = y.reshape(b, -1, h, w)
    s = m.pool.kernel_size if isinstance(m.pool, nn.AvgPool2d) else 1
    if s == 1:
        return y
    out = torch.zeros(b, y.shape[1], -(-h // s), -(-w // s), dtype=x.dtype)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = y[:, :, s * i:s * i + s, s * j:s * j + s].mean((2, 3))
    return out


@pytest.mark.parametrize("kwargs", [dict(heads=2), dict(heads=2, stride=2, out_channels=12)])
def test_sasa_brute_force_with_borders(kwargs):
    m = randomize(make("sasa", channels=8, **kwargs)).double()
    x = torch.randn(1, 8, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), sasa_brute_force(m, x))


def test_sasa_paper_facts():
    m = make("sasa", channels=64)
    assert m.kernel_size == 7 and m.heads == 8
    assert m.rel_rows.shape == (8, 4, 7) and m.rel_cols.shape == (8, 4, 7)
    assert m.rel_rows.numel() + m.rel_cols.numel() == 64 * 7            # d_out * k
    assert make("sasa", channels=36).heads == 6                           # fallback: divisor <= 8
    assert not any(conv.bias is not None for conv in (m.query, m.key, m.value))


def test_sasa_borders_are_masked_not_zero_padded():
    """A 1x1 map: the only neighbour is the pixel itself, so the output is exactly v."""
    m = randomize(make("sasa", channels=8, heads=2)).double()
    x = torch.randn(2, 8, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(m(x), m.value(x))


# ----------------------------------------------------------------------------- SAN
def san_brute_force(m, x, pairwise):
    """Eval mode (BN = per-element affine), so gamma can run one footprint at a time."""
    _, _, h, w = x.shape
    k, s, r = m.kernel_size, m.stride, m.kernel_size // 2
    phi, psi, beta = m.phi(x)[0], m.psi(x)[0], m.beta(x)[0]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    pos = m.position(torch.stack([xs, ys])[None].double())[0] if pairwise else None
    reflect = lambda t, n: -t if t < 0 else (2 * (n - 1) - t if t >= n else t)   # noqa: E731
    out = torch.zeros(m.out_channels, -(-h // s), -(-w // s), dtype=x.dtype)
    for oi in range(out.shape[1]):
        for oj in range(out.shape[2]):
            i, j = s * oi, s * oj
            nbs = [(reflect(a, h), reflect(c, w)) for a in range(i - r, i + r + 1) for c in range(j - r, j + r + 1)]
            if pairwise:
                feats = [torch.cat([phi[:, i, j] - psi[:, a, c], pos[:, i, j] - pos[:, a, c]]) for a, c in nbs]
                logits = torch.stack([m.gamma(f[None, :, None, None])[0, :, 0, 0] for f in feats])   # (k2, wc)
                weights = torch.softmax(logits, 0)
            else:
                patch = torch.cat([phi[:, i, j]] + [torch.stack([psi[:, a, c] for a, c in nbs], 1).flatten()])
                weights = m.gamma(patch[None, :, None, None])[0, :, 0, 0].view(-1, k * k).t()
            for ch in range(m.out_channels):
                out[ch, oi, oj] = sum(weights[n, ch % m.weight_channels] * beta[ch, a, c]
                                      for n, (a, c) in enumerate(nbs))
    return out[None]


@pytest.mark.parametrize("pairwise", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_san_brute_force(pairwise, stride):
    name = "san_pairwise" if pairwise else "san_patchwise"
    m = randomize(make(name, channels=16, out_channels=16, kernel_size=5, stride=stride)).double().eval()
    x = torch.randn(1, 16, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x), san_brute_force(m, x, pairwise))


def test_san_paper_facts():
    pair, patch = make("san_pairwise", channels=64), make("san_patchwise", channels=64)
    for m in (pair, patch):
        assert m.kernel_size == 7 and m.rel_planes == 4 and m.weight_channels == 64 // 8
    assert make("san_pairwise", channels=12).share_planes == 6                 # fallback: divisor <= 8
    r, wc = 4, 8
    assert pair.gamma[2].in_channels == r + 2 and pair.gamma[-1].out_channels == wc
    assert patch.gamma[2].in_channels == r * (49 + 1) and patch.gamma[-1].out_channels == wc * 49
    convs = 2 * (64 * r + r) + 64 * 64 + 64
    assert sum(p.numel() for p in pair.parameters()) == (
        convs + 2 * 2 + 2 + 2 * (r + 2) + (r + 2) * r + 2 * r + r * wc + wc)
    assert sum(p.numel() for p in patch.parameters()) == (
        convs + 2 * r * 50 + r * 50 * wc + 2 * wc + wc * wc * 49 + wc * 49)


def test_san_reflection_indices():
    for size in (4, 5, 9):
        pad = 3
        t = torch.arange(size, dtype=torch.float32).view(1, 1, size)
        torch.testing.assert_close(F.pad(t, (pad, pad), mode="reflect")[0, 0].long(),
                                   reflect_indices(size, pad))
    # smaller than the padding: keeps bouncing between the edges
    assert reflect_indices(2, 3).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert reflect_indices(3, 3).tolist() == [1, 2, 1, 0, 1, 2, 1, 0, 1]
    assert reflect_indices(1, 3).tolist() == [0] * 7


# ----------------------------------------------------------------------------- ViT block
def test_mhsa_paper_facts():
    m = make("mhsa", channels=32)
    assert m.heads == 8 and m.mlp[0].out_features == 4 * 32 and isinstance(m.mlp[1], nn.GELU)
    assert m.norm1.eps == 1e-6 and m.pos_embed.shape == (1, 32, 14, 14)
    assert make("mhsa", channels=36).heads == 6 and make("mhsa", channels=7).heads == 7


def keys_cubic_matrix(n_in, n_out, a=-0.75):
    """Resize matrix of the Keys cubic convolution kernel, half-pixel centres, edge clamping."""
    def kernel(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        if t < 2:
            return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
        return 0.0
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        src = (o + 0.5) * n_in / n_out - 0.5
        f = math.floor(src)
        for tap in range(f - 1, f + 3):
            mat[o, min(max(tap, 0), n_in - 1)] += kernel(src - tap)
    return mat


@pytest.mark.parametrize("size", [(7, 5), (15, 9), (3, 3), (14, 14)])
def test_mhsa_position_embedding_interpolation(size):
    m = make("mhsa", channels=8, pos_size=(6, 4)).double()
    pos = m.position_embedding(*size)
    expected = torch.einsum("oh,chw,pw->cop", keys_cubic_matrix(6, size[0]), m.pos_embed[0],
                            keys_cubic_matrix(4, size[1]))
    torch.testing.assert_close(pos[0], expected)
    assert m.position_embedding(6, 4) is m.pos_embed


# ----------------------------------------------------------------------------- DETR
def test_detr_defaults_and_sine_encoding_by_hand():
    m = make("detr", channels=32)
    assert m.query_embed.num_embeddings == 8 and len(m.layers) == 2 and m.out_channels == 32
    default = build_attention("detr", channels=256)
    assert default.layers[0].linear1.out_features == 2048 and default.heads == 8
    assert default.layers[0].dropout.p == 0.1
    enc = sine_encoding_1d(2, 4)                     # positions pi and 2 pi (normalised by 2)
    p = torch.tensor([math.pi, 2 * math.pi]) * (2 / (2 + 1e-6))
    expected = torch.stack([p.sin(), p.cos(), (p / 100).sin(), (p / 100).cos()], 1)
    torch.testing.assert_close(enc, expected)


def test_detr_positions_reach_the_keys_only():
    """Permuting the tokens changes nothing without positional encodings; with them it does."""
    m = randomize(make("detr", channels=8, dropout=0.0)).double()
    x = torch.randn(1, 8, 2, 3, 3, dtype=torch.float64)
    flipped = x.flip(3)
    assert not torch.allclose(m(x), m(flipped))
    from models.attention import transformer
    original = transformer.sine_encoding_parts
    transformer.sine_encoding_parts = lambda *a, **k: [torch.zeros_like(e) for e in original(*a, **k)]
    try:
        torch.testing.assert_close(m(x), m(flipped))
    finally:
        transformer.sine_encoding_parts = original


def test_detr_token_cross_attention_with_dropout_equals_the_projected_form():
    """Keys and values are never projected: with dropout on the weights (so they no longer sum
    to 1) the value bias must be scaled by the kept weights' sum to match the usual form."""
    from models.attention.transformer import TokenCrossAttention, sine_encoding_3d, sine_encoding_parts
    att = randomize(TokenCrossAttention(C, 4, dropout=0.5)).double().train()
    n, q_len, (t, h, w) = 2, 3, (2, 3, 4)
    query, tokens = torch.randn(n, q_len, C, dtype=torch.float64), torch.randn(n, C, t * h * w, dtype=torch.float64)
    torch.manual_seed(7)
    ours = att(query, tokens, [e.double() for e in sine_encoding_parts(t, h, w, C)])
    memory = tokens.transpose(1, 2)
    keys = memory + sine_encoding_3d(t, h, w, C).double()
    split = lambda z: z.view(n, -1, 4, C // 4).transpose(1, 2)  # noqa: E731
    q, k, v = split(att.q_proj(query)), split(att.k_proj(keys)), split(att.v_proj(memory))
    weights = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(C // 4), -1)
    torch.manual_seed(7)
    weights = F.dropout(weights.reshape(n, -1, t * h * w), 0.5).view_as(weights)
    expected = att.out_proj((weights @ v).transpose(1, 2).reshape(n, q_len, C))
    torch.testing.assert_close(ours, expected)


def test_detr_every_parameter_takes_part():
    """DDP (without find_unused_parameters) needs every parameter in the graph, zero gradient or not:
    the cross-attention's key bias, which the softmax cancels, included."""
    m = make("detr").train()
    m(sample("detr", 4, 4)).sum().backward()
    assert [name for name, p in m.named_parameters() if p.grad is None] == []
