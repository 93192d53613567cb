"""Plain reference formulations of the long-range (self-)attention modules.

Each ``ref(module, x) -> y`` recomputes ``module(x)`` from the module's own parameters along
an explicit route: dense ``(HW) x (HW)`` attention matrices with masks, neighbour index tables
instead of ``unfold``, hand-written BN / LayerNorm / GELU / pooling, explicit EM sums.
Written for clarity, not speed: the tests compare against them and ``tools/benchmark.py``
times the modules against them. BN layers follow the module's mode (batch statistics in
training, running statistics in eval) and no buffer is updated. Not auto-imported.
"""
from __future__ import annotations

import math

import torch
from torch import nn


# ----------------------------------------------------------------------------- layers by hand
def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    if bn.training:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    y = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
    return y * bn.weight[:, None, None] + bn.bias[:, None, None]


def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    y = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)
    return y if conv.bias is None else y + conv.bias[:, None, None]


def linear(layer: nn.Linear, t: torch.Tensor) -> torch.Tensor:
    return t @ layer.weight.t() + layer.bias


def layer_norm(norm: nn.LayerNorm, t: torch.Tensor) -> torch.Tensor:
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    return (t - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def gelu(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))


def softmax(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The plain softmax op: the explicit forms materialise its input, not its internals."""
    return torch.softmax(t, dim)


def max_pool_2x2_ceil(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling, stride 2, a partial window at odd edges (``ceil_mode``)."""
    b, c, h, w = x.shape
    x = nn.functional.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
    return x.view(b, c, x.shape[2] // 2, 2, x.shape[3] // 2, 2).amax((3, 5))


def avg_pool_ceil(x: torch.Tensor, s: int) -> torch.Tensor:
    """``s x s`` average pooling, stride ``s``, partial windows averaged over their pixels."""
    b, c, h, w = x.shape
    ph, pw = -h % s, -w % s
    total = nn.functional.pad(x, (0, pw, 0, ph)).view(b, c, (h + ph) // s, s, (w + pw) // s, s).sum((3, 5))
    ones = nn.functional.pad(torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device), (0, pw, 0, ph))
    count = ones.view(1, 1, (h + ph) // s, s, (w + pw) // s, s).sum((3, 5))
    return total / count


def window_table(h: int, w: int, k: int, stride: int = 1, reflect: bool = False, device=None):
    """For every output position (centres ``(s*i, s*j)``) and every offset of the ``k x k``
    window (row-major): the flat index of the neighbour and whether it lies inside the map.
    Outside neighbours are reflected once about the edge when ``reflect`` (the official SAN
    kernels' rule), else clamped to 0 and flagged invalid."""
    r = k // 2
    cy = torch.arange(0, h, stride, device=device)
    cx = torch.arange(0, w, stride, device=device)
    off = torch.arange(-r, r + 1, device=device)
    ys = (cy[:, None, None, None] + off[None, None, :, None]).expand(len(cy), len(cx), k, k)
    xs = (cx[None, :, None, None] + off[None, None, None, :]).expand(len(cy), len(cx), k, k)
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    if reflect:
        ys = torch.where(ys < 0, -ys, torch.where(ys >= h, 2 * (h - 1) - ys, ys))
        xs = torch.where(xs < 0, -xs, torch.where(xs >= w, 2 * (w - 1) - xs, xs))
    index = torch.where(valid | reflect, ys * w + xs, torch.zeros_like(ys))
    return index.reshape(-1, k * k), valid.reshape(-1, k * k)


def gather_windows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)``, index ``(L, k2)`` -> ``(B, C, L, k2)``."""
    return x.flatten(2)[:, :, index]


# ----------------------------------------------------------------------------- non-local
def ref_nonlocal(m, x):
    b, c, h, w = x.shape
    pool = max_pool_2x2_ceil if isinstance(m.pool, nn.MaxPool2d) else (lambda t: t)
    if m.mode == "gaussian":
        theta, phi = x, pool(x)
    else:
        theta, phi = conv1x1(m.theta, x), pool(conv1x1(m.phi, x))
    g = pool(conv1x1(m.g, x)).flatten(2)                         # (B, Ci, M)
    theta, phi = theta.flatten(2), phi.flatten(2)                # (B, d, N), (B, d, M)
    n_keys = phi.shape[2]
    if m.mode in ("embedded_gaussian", "gaussian"):
        energy = theta.transpose(1, 2) @ phi                     # (B, N, M)
        if m.scale:
            energy = energy / math.sqrt(theta.shape[1])
        f = softmax(energy, dim=2)
    elif m.mode == "dot":
        f = theta.transpose(1, 2) @ phi / n_keys
    else:  # concat: relu(w^T [theta_i; phi_j]) / N, weight split into its theta and phi halves
        w_theta, w_phi = m.concat_project.weight[0].split(theta.shape[1])
        pair = (w_theta @ theta)[:, :, None] + (w_phi @ phi)[:, None, :]
        f = torch.relu(pair) / n_keys
    y = (f @ g.transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
    return x + batch_norm(m.bn, conv1x1(m.out, y))


# ----------------------------------------------------------------------------- criss-cross
def ref_cc(m, x):
    """Full ``(HW) x (HW)`` attention restricted to the row and column of each position."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).repeat_interleave(w)
    cols = torch.arange(w, device=x.device).repeat(h)
    allowed = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])   # self once
    for _ in range(m.recurrence):
        q, k, v = (conv1x1(conv, x).flatten(2) for conv in (m.query, m.key, m.value))
        energy = (q.transpose(1, 2) @ k).masked_fill(~allowed, float("-inf"))
        attn = softmax(energy, dim=2)                            # (B, N query, N key)
        out = (v @ attn.transpose(1, 2)).view(b, c, h, w)
        x = m.gamma * out + x
    return x


# ----------------------------------------------------------------------------- EMA
def ema_em(m, x):
    """Bases ``(B, C, K)`` and responsibilities ``(B, N, K)`` by explicit EM sums."""
    feats = conv1x1(m.conv_in, x).flatten(2).detach()           # (B, C, N)
    mu = m.bases.expand(x.shape[0], -1, -1)
    for _ in range(m.num_iters):
        logits = torch.einsum("bcn,bck->bnk", feats, mu)
        z = torch.exp(logits - logits.amax(2, keepdim=True))
        z = z / z.sum(2, keepdim=True)                           # E-step: p(k | x_n)
        mu = torch.einsum("bcn,bnk->bck", feats, z) / (1e-6 + z.sum(1)[:, None, :])   # M-step
        mu = mu / (1e-6 + torch.sqrt((mu ** 2).sum(1, keepdim=True)))
    return mu, z


def ref_ema(m, x):
    mu, z = ema_em(m, x)
    recon = torch.relu(torch.einsum("bck,bnk->bcn", mu, z)).view_as(x)
    return torch.relu(x + batch_norm(m.bn, conv1x1(m.conv_out, recon)))


# ----------------------------------------------------------------------------- SASA
def ref_sasa(m, x):
    """Local attention through a neighbour index table; outside neighbours masked."""
    b, _, h, w = x.shape
    k, heads = m.kernel_size, m.heads
    index, valid = window_table(h, w, k, device=x.device)        # (N, k2)
    split = lambda t: t.view(b, heads, -1, *t.shape[2:])          # noqa: E731
    q = split(conv1x1(m.query, x).flatten(2))                    # (B, h, d, N)
    keys = split(gather_windows(conv1x1(m.key, x), index))       # (B, h, d, N, k2)
    values = split(gather_windows(conv1x1(m.value, x), index))
    dy = torch.arange(k * k, device=x.device) // k               # row offset index of each tap
    dx = torch.arange(k * k, device=x.device) % k
    r = torch.cat([m.rel_rows[:, :, dy], m.rel_cols[:, :, dx]], dim=1)   # (heads, d, k2)
    logits = torch.einsum("bhdn,bhdnj->bhnj", q, keys) + torch.einsum("bhdn,hdj->bhnj", q, r)
    attn = softmax(logits.masked_fill(~valid, float("-inf")), dim=3)
    y = torch.einsum("bhnj,bhdnj->bhdn", attn, values).reshape(b, -1, h, w)
    stride = m.pool.kernel_size if isinstance(m.pool, nn.AvgPool2d) else 1
    return avg_pool_ceil(y, stride) if stride > 1 else y


# ----------------------------------------------------------------------------- SAN
def mlp_by_hand(seq: nn.Sequential, t: torch.Tensor) -> torch.Tensor:
    for layer in seq:
        if isinstance(layer, nn.BatchNorm2d):
            t = batch_norm(layer, t)
        elif isinstance(layer, nn.ReLU):
            t = torch.relu(t)
        else:
            t = conv1x1(layer, t)
    return t


def san_windows(m, x):
    h, w = x.shape[2:]
    index, _ = window_table(h, w, m.kernel_size, m.stride, reflect=True, device=x.device)
    centre = index[:, (m.kernel_size ** 2) // 2]
    return index, centre, -(-h // m.stride), -(-w // m.stride)


def san_aggregate(m, x, weights, index, out_h, out_w):
    """``y[c, i] = sum_j weights[c mod (out/share), i, j] * beta(x)[c, j]``, weights ``(B, wc, L, k2)``."""
    values = gather_windows(conv1x1(m.beta, x), index)           # (B, out, L, k2)
    channel_weights = weights[:, torch.arange(m.out_channels, device=x.device) % m.weight_channels]
    return (channel_weights * values).sum(3).view(x.shape[0], -1, out_h, out_w)


def ref_san_pairwise(m, x):
    b, _, h, w = x.shape
    index, centre, out_h, out_w = san_windows(m, x)
    phi = conv1x1(m.phi, x).flatten(2)[:, :, centre]             # (B, r, L)
    psi = gather_windows(conv1x1(m.psi, x), index)               # (B, r, L, k2)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    p = conv1x1(m.position, torch.stack([xs, ys])[None].to(x)).flatten(2)   # (1, 2, HW)
    p_rel = (p[:, :, centre, None] - p[:, :, index]).expand(b, -1, -1, -1)
    relation = torch.cat([phi[..., None] - psi, p_rel], dim=1)   # (B, r + 2, L, k2)
    weights = softmax(mlp_by_hand(m.gamma, relation), dim=3)
    return san_aggregate(m, x, weights, index, out_h, out_w)


def ref_san_patchwise(m, x):
    b = x.shape[0]
    index, centre, out_h, out_w = san_windows(m, x)
    k2 = m.kernel_size ** 2
    phi = conv1x1(m.phi, x).flatten(2)[:, :, centre]             # (B, r, L)
    psi = gather_windows(conv1x1(m.psi, x), index)               # (B, r, L, k2)
    patch = torch.cat([phi, psi.permute(0, 1, 3, 2).flatten(1, 2)], dim=1)   # (B, r(1 + k2), L)
    weights = mlp_by_hand(m.gamma, patch[..., None])[..., 0]     # (B, wc * k2, L)
    weights = weights.view(b, m.weight_channels, k2, -1).transpose(2, 3)
    return san_aggregate(m, x, weights, index, out_h, out_w)


# ----------------------------------------------------------------------------- transformers
def attention_by_hand(q, k, v, heads, dropout=0.0):
    """Explicit multi-head ``softmax(QK^T / sqrt(d)) V`` on ``(B, L, D)`` tensors (dropout on
    the attention weights, as SDPA's ``dropout_p``)."""
    b, lq, dim = q.shape
    d = dim // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    attn = nn.functional.dropout(softmax(q @ k.transpose(2, 3) / math.sqrt(d), dim=3), dropout)
    return (attn @ v).transpose(1, 2).reshape(b, lq, dim)


def dropout(module, p, t):
    """Dropout as the module applies it (random masks differ, the work does not)."""
    return nn.functional.dropout(t, p, training=module.training) if p else t


def ref_mhsa(m, x):
    b, c, h, w = x.shape
    pos = nn.functional.interpolate(m.pos_embed, size=(h, w), mode="bicubic", align_corners=False)
    t = (x + pos).flatten(2).transpose(1, 2)
    u = layer_norm(m.norm1, t)
    q, k, v = linear(m.qkv, u).split(c, dim=2)
    p_attn, p = (m.attn_dropout if m.training else 0.0), m.mlp[2].p
    t = t + dropout(m, p, linear(m.proj, attention_by_hand(q, k, v, m.heads, p_attn)))
    u = layer_norm(m.norm2, t)
    t = t + dropout(m, p, linear(m.mlp[3], dropout(m, p, gelu(linear(m.mlp[0], u)))))
    return t.transpose(1, 2).reshape(b, c, h, w)


def sine_table(length, dims, temperature):
    """DETR's ``PositionEmbeddingSine`` for one axis (normalised cumulative positions)."""
    embed = torch.cumsum(torch.ones(length), 0)
    embed = embed / (embed[-1:] + 1e-6) * 2 * math.pi
    dim_t = torch.arange(dims, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / dims)
    pos = embed[:, None] / dim_t
    out = torch.empty_like(pos)
    out[:, 0::2], out[:, 1::2] = pos[:, 0::2].sin(), pos[:, 1::2].cos()
    return out


def ref_detr(m, x):
    n, c, t, h, w = x.shape
    c_yx = (c // 3) // 2 * 2
    pt, py, px = sine_table(t, c - 2 * c_yx, m.temperature), sine_table(h, c_yx, m.temperature), \
        sine_table(w, c_yx, m.temperature)
    pos = torch.cat([pt[:, None, None].expand(t, h, w, -1), py[None, :, None].expand(t, h, w, -1),
                     px[None, None].expand(t, h, w, -1)], dim=3).reshape(t * h * w, c).to(x)
    memory = x.flatten(2).transpose(1, 2)
    query_pos = m.query_embed.weight[None].expand(n, -1, -1)
    tgt = torch.zeros_like(query_pos)

    def mha(att, q, k, v):
        out = attention_by_hand(linear(att.q_proj, q), linear(att.k_proj, k), linear(att.v_proj, v), att.heads,
                                att.dropout if m.training else 0.0)
        return linear(att.out_proj, out)

    for layer in m.layers:
        drop = lambda t: dropout(m, layer.dropout.p, t)   # noqa: E731
        tgt = layer_norm(layer.norm1, tgt + drop(mha(layer.self_attn, tgt + query_pos, tgt + query_pos, tgt)))
        tgt = layer_norm(layer.norm2, tgt + drop(mha(layer.cross_attn, tgt + query_pos, memory + pos, memory)))
        ffn = linear(layer.linear2, drop(torch.relu(linear(layer.linear1, tgt))))
        tgt = layer_norm(layer.norm3, tgt + drop(ffn))
    tgt = layer_norm(m.norm, tgt)
    return tgt.mean(1) if m.reduce == "mean" else tgt.flatten(1)


REFERENCES = {
    "nonlocal": ref_nonlocal, "cc": ref_cc, "ema": ref_ema, "sasa": ref_sasa,
    "san_pairwise": ref_san_pairwise, "san_patchwise": ref_san_patchwise,
    "mhsa": ref_mhsa, "detr": ref_detr,
}
