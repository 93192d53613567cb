"""Plain reference formulations of the channel / gather-excite / hybrid blocks.

Each ``ref(module, x) -> y`` recomputes ``module(x)`` from the module's own parameters along a
different route (explicit matrices, unfold convolutions, hand-written BN, the official code's
axis permutations), written for clarity, not speed. Tests compare against them and
``tools/benchmark.py`` times the modules against them. BN layers follow the module's mode
(batch statistics in training, running statistics in eval) without updating any buffer.
Not auto-imported (leading underscore).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def batch_norm(bn, x: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over every axis but 1."""
    shape = [1, -1] + [1] * (x.dim() - 2)
    if bn.training or bn.running_mean is None:
        axes = [0] + list(range(2, x.dim()))
        mean, var = x.mean(axes), x.var(axes, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
    return y * bn.weight.view(shape) + bn.bias.view(shape)


def conv2d_unfold(x, weight, bias=None, padding=0, dilation=1, stride=1):
    """A dense (groups=1) convolution as ``weight @ unfold(x)``."""
    b, _, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    out_h = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    out_w = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = torch.matmul(weight.reshape(out_ch, -1), cols).reshape(b, out_ch, out_h, out_w)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def depthwise_conv_taps(x, weight, stride, padding):
    """A depth-wise convolution as a sum over the kernel taps of shifted, strided views."""
    _, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    padded = F.pad(x, (padding, padding, padding, padding))
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    y = 0
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * (out_h - 1) + 1, stride)
            cols = slice(j, j + stride * (out_w - 1) + 1, stride)
            window = padded[:, :, rows, cols]
            y = y + window * weight[:, 0, i, j].view(1, -1, 1, 1)
    return y


def linear(v, layer):
    return v @ layer.weight.t() + (0 if layer.bias is None else layer.bias)


def spatial_mean(x):
    return x.sum((2, 3)) / (x.shape[2] * x.shape[3])


def ref_se(m, x):
    s = torch.sigmoid(linear(torch.relu(linear(spatial_mean(x), m.fc1)), m.fc2))
    return x * s[:, :, None, None]


def ref_gsop(m, x):
    conv, bn = m.reduce[0], m.reduce[1]
    stride = conv.stride[0]
    z = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], torch.relu(x)[:, :, ::stride, ::stride])
    z = torch.relu(batch_norm(bn, z + conv.bias.view(1, -1, 1, 1))).flatten(2)  # (B, d, M)
    M = z.shape[2]
    like = dict(dtype=x.dtype, device=x.device)
    i_hat = torch.eye(M, **like) / M - torch.ones(M, M, **like) / (M * M)
    cov = z @ i_hat @ z.transpose(1, 2)                                          # official Covpool
    cov = batch_norm(m.row_bn, cov.unsqueeze(3))[..., 0]                          # (B, d, d)
    d = cov.shape[1]
    row_w = m.row_conv.weight[:, 0, :, 0].reshape(d, 4, d)                        # group i -> 4 outputs
    rows = torch.einsum("ikj,bij->bik", row_w, cov).reshape(x.shape[0], 4 * d) + m.row_conv.bias
    s = torch.sigmoid(rows @ m.fc.weight[:, :, 0, 0].t() + m.fc.bias)
    return x * s[:, :, None, None]


def adaptive_average_matrix(size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` averaging matrix of adaptive pooling: bin ``i`` covers
    ``[floor(i * in / out), ceil((i + 1) * in / out))``."""
    m = torch.zeros(size_out, size_in, dtype=like.dtype, device=like.device)
    for i in range(size_out):
        start, stop = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
        m[i, start:stop] = 1.0 / (stop - start)
    return m


def ref_fca(m, x):
    """The official forward retyped: pool to the ``dct_h x dct_w`` grid, frequencies
    ``u * (dct_h // 7)`` (``floor(u * size / 7)`` off the 7-multiples), filters by loops."""
    from .fca import TOP_FREQ_COLS, TOP_FREQ_ROWS
    b, c, h, w = x.shape
    dh, dw = (h, w) if m.dct_size == "input" else m.dct_size
    if (dh, dw) != (h, w):
        x_pooled = torch.einsum("ih,bchw,jw->bcij", adaptive_average_matrix(h, dh, x), x,
                                adaptive_average_matrix(w, dw, x))
    else:
        x_pooled = x

    def basis(pos, freq, size):
        value = math.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
        return value if freq == 0 else value * math.sqrt(2)

    def scaled(u, size):
        return u * (size // 7) if size % 7 == 0 else u * size // 7

    filters = torch.zeros(c, dh, dw, dtype=x.dtype, device=x.device)
    part = c // m.num_freq
    for g in range(m.num_freq):
        u, v = scaled(TOP_FREQ_ROWS[g], dh), scaled(TOP_FREQ_COLS[g], dw)
        for i in range(dh):
            for j in range(dw):
                filters[g * part:(g + 1) * part, i, j] = basis(i, u, dh) * basis(j, v, dw)
    pooled = (x_pooled * filters).sum((2, 3))
    s = torch.sigmoid(linear(torch.relu(linear(pooled, m.fc1)), m.fc2))
    return x * s[:, :, None, None]


def ref_eca(m, x):
    c = x.shape[1]
    weight = m.conv.weight[0, 0]
    k = weight.numel()
    band = sum(torch.diag(weight[t].expand(c - abs(t - k // 2)), t - k // 2) for t in range(k))
    return x * torch.sigmoid(spatial_mean(x) @ band.t())[:, :, None, None]


def ref_srm(m, x):
    n = x.shape[2] * x.shape[3]
    mean = spatial_mean(x)
    std = torch.sqrt(((x - mean[:, :, None, None]) ** 2).sum((2, 3)) / (n - 1) + m.eps)
    z = mean * m.cfc.weight[:, 0, 0] + std * m.cfc.weight[:, 0, 1]
    return x * torch.sigmoid(batch_norm(m.bn, z))[:, :, None, None]


def ref_gct(m, x):
    alpha, gamma, beta = (p.view(1, -1) for p in (m.alpha, m.gamma, m.beta))
    if m.mode == "l2":
        s = alpha * torch.sqrt((x * x).sum((2, 3)) + m.eps)
        n = gamma * s / torch.sqrt((s * s).mean(1, keepdim=True) + m.eps)
    else:
        s = alpha * (x if m.after_relu else x.abs()).sum((2, 3))
        n = gamma * s / (s.abs().mean(1, keepdim=True) + m.eps)
    return x * (1 + torch.tanh(n + beta))[:, :, None, None]


def nearest_resize(ctx, h, w):
    """Nearest-neighbour upsampling with source index ``floor(i * in / out)``."""
    rows = torch.tensor([i * ctx.shape[2] // h for i in range(h)], device=ctx.device)
    cols = torch.tensor([j * ctx.shape[3] // w for j in range(w)], device=ctx.device)
    return ctx[:, :, rows][:, :, :, cols]


def ref_ge(m, x):
    b, c, h, w = x.shape
    if m.gather is None and m.extent == 0:
        ctx = spatial_mean(x)[:, :, None, None]
    elif m.gather is None:
        e = m.extent
        ones = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
        box = torch.ones(2 * e - 1, 2 * e - 1, dtype=x.dtype, device=x.device)
        sums = depthwise_conv_taps(x, box.expand(c, 1, -1, -1), e, e - 1)
        counts = depthwise_conv_taps(ones, box.expand(1, 1, -1, -1), e, e - 1)
        ctx = sums / counts
    else:
        ctx = x
        for layer in m.gather:
            if isinstance(layer, torch.nn.Conv2d):
                ctx = depthwise_conv_taps(ctx, layer.weight, layer.stride[0], layer.padding[0])
            elif isinstance(layer, torch.nn.BatchNorm2d):
                ctx = batch_norm(layer, ctx)
            else:
                ctx = torch.relu(ctx)
    if m.excite is not None:
        down, up = m.excite[1], m.excite[3]
        hidden = torch.relu(torch.einsum("oc,bchw->bohw", down.weight[:, :, 0, 0], torch.relu(ctx))
                            + down.bias.view(1, -1, 1, 1))
        ctx = torch.einsum("oc,bchw->bohw", up.weight[:, :, 0, 0], hidden) + up.bias.view(1, -1, 1, 1)
    return x * torch.sigmoid(nearest_resize(ctx, h, w))


def conv_gate(gate, pooled):
    k = gate.conv.weight.shape[-1]
    return torch.sigmoid(batch_norm(gate.bn, conv2d_unfold(pooled, gate.conv.weight, padding=k // 2)))


def channel_pool(x):
    """Official Z-pool: ``[max, mean]`` over axis 1."""
    return torch.cat((x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)), 1)


def ref_cbam(m, x):
    fc1, fc2 = m.mlp[0], m.mlp[2]

    def mlp(v):
        return linear(torch.relu(linear(v, fc1)), fc2)

    avg, mx = spatial_mean(x), x.flatten(2).max(2)[0]
    x = x * torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None]
    return x * conv_gate(m.spatial, channel_pool(x))


def ref_bam(m, x):
    """Paper: ``Mc = BN_C(fc1 relu(fc0 gap))``, ``Ms`` ends in a one-channel BN, ``sigmoid(Mc + Ms)``.
    Official code: ``Mc = fc1 relu(BN_{C/r}(fc0 gap))``, no BN after the last 1x1 conv of ``Ms``,
    ``sigmoid(Mc * Ms)``. Both: ``F + F * M``."""
    official = m.variant == "official"
    fc0, fc1 = m.channel_mlp[0], m.channel_mlp[-1]
    hidden = linear(spatial_mean(x), fc0)
    if official:
        mc = linear(torch.relu(batch_norm(m.channel_mlp[1], hidden)), fc1)
    else:
        mc = batch_norm(m.channel_bn, linear(torch.relu(hidden), fc1))
    ms = x
    for layer in m.spatial:
        if isinstance(layer, torch.nn.Conv2d):
            ms = conv2d_unfold(ms, layer.weight, layer.bias, padding=layer.padding[0],
                               dilation=layer.dilation[0])
        elif isinstance(layer, torch.nn.BatchNorm2d):
            ms = batch_norm(layer, ms)
        else:
            ms = torch.relu(ms)
    assert ms.shape[1] == 1 and (official == (not isinstance(m.spatial[-1], torch.nn.BatchNorm2d)))
    mc = mc[:, :, None, None]
    att = torch.sigmoid(mc * ms) if official else torch.sigmoid(mc + ms)
    return x + x * att


def ref_cse(m, x):
    return ref_se(m, x)


def ref_sse(m, x):
    q = torch.einsum("c,bchw->bhw", m.conv.weight[0, :, 0, 0], x) + m.conv.bias[0]
    return x * torch.sigmoid(q)[:, None]


def ref_scse(m, x):
    a, b = ref_cse(m.cse, x), ref_sse(m.sse, x)
    return {"add": a + b, "max": torch.maximum(a, b), "mul": a * b}[m.aggregation]


def ref_triplet(m, x):
    """The official code's route: rotate the whole tensor, gate, rotate back, average."""
    def branch(gate, rotated):
        return rotated * conv_gate(gate, channel_pool(rotated))

    out_cw = branch(m.cw, x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
    out_hc = branch(m.hc, x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)
    if m.hw is None:
        return (out_cw + out_hc) / 2
    return (out_cw + out_hc + branch(m.hw, x)) / 3


def ref_simam(m, x):
    mu = x.mean((2, 3), keepdim=True)
    var = torch.var(x, dim=(2, 3), keepdim=True, unbiased=True)  # sum (x-mu)^2 / (HW - 1)
    return x * torch.sigmoid((x - mu) ** 2 / (4 * (var + m.e_lambda)) + 0.5)


REFERENCES = {
    "se": ref_se, "gsop": ref_gsop, "fca": ref_fca, "eca": ref_eca, "srm": ref_srm, "gct": ref_gct,
    "ge": ref_ge, "cbam": ref_cbam, "bam": ref_bam, "scse": ref_scse, "cse": ref_cse, "sse": ref_sse,
    "triplet": ref_triplet, "simam": ref_simam,
}
