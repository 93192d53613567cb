"""Plain reference formulations of the temporal / spatio-temporal modules.

Each ``ref(module, x) -> y`` recomputes ``module(x)`` (the plain call, no aux outputs) from the
module's own parameters along a different route: shifted-window sums instead of grouped or
dilated convolutions, an explicit ``softmax(Q K^T) V`` instead of the fused kernel, explicit
part slices and per-part ``argmax``, explicit degree normalisation instead of
``torch_geometric``, hand-written LSTM gates. Written for clarity, not speed; the tests compare
against them and ``tools/benchmark.py`` can time the modules against them. BN layers follow the
module's mode (batch statistics in training, running statistics in eval) without updating any
buffer. Not auto-imported (leading underscore).
"""
from __future__ import annotations

import torch

from ._reference_channel import batch_norm  # one plain BN for every reference


def shift_time(x: torch.Tensor, offset: int) -> torch.Tensor:
    """``y[..., t] = x[..., t + offset]`` along the last axis, zero outside."""
    t = x.shape[-1]
    y = torch.zeros_like(x)
    lo, hi = max(0, -offset), min(t, t - offset)
    if lo < hi:
        y[..., lo:hi] = x[..., lo + offset:hi + offset]
    return y


def conv1d_taps(x: torch.Tensor, weight: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """A same-length (zero padded) 1-D convolution ``(N, Cin, T)`` as a sum over the taps."""
    k = weight.shape[-1]
    return sum(torch.einsum("oc,nct->not", weight[:, :, i], shift_time(x, (i - k // 2) * dilation))
               for i in range(k))


def linear(v: torch.Tensor, layer) -> torch.Tensor:
    return v @ layer.weight.t() + (0 if layer.bias is None else layer.bias)


def ref_tam(m, x):
    n, c, t, h, w = x.shape
    pooled = x.mean((3, 4))
    fc1, bn, _, fc2, _ = m.global_branch
    hidden = torch.relu(batch_norm(bn, linear(pooled.reshape(n * c, t), fc1)))
    kernels = torch.softmax(linear(hidden, fc2), -1)
    conv1, bn1, _, conv2, _ = m.local_branch
    hidden = torch.relu(batch_norm(bn1, conv1d_taps(pooled, conv1.weight)))
    importance = torch.sigmoid(torch.einsum("oc,nct->not", conv2.weight[:, :, 0], hidden))
    seq = (x * importance[..., None, None]).permute(0, 1, 3, 4, 2)            # time last
    k = m.kernel_size
    kernels = kernels.reshape(n, c, 1, 1, 1, k)
    y = sum(kernels[..., i] * shift_time(seq, i - k // 2) for i in range(k))
    return y.permute(0, 1, 4, 2, 3)


def ref_gltr(m, x):
    frames = x.mean((3, 4)).transpose(1, 2)
    if not isinstance(m.embed, torch.nn.Identity):
        frames = linear(frames, m.embed)
    seq = frames.transpose(1, 2)
    branches = [seq] if m.keep_input else []
    branches += [conv1d_taps(seq, conv.weight, conv.dilation[0]) for conv in m.pyramid]
    r = torch.cat(branches, 1).transpose(1, 2)                                # (N, T, width)
    q, k, v = linear(r, m.theta), linear(r, m.phi), linear(r, m.g)
    attn = torch.softmax(q @ k.transpose(1, 2), -1)                           # (N, T, T), no scaling
    branch = batch_norm(m.w_bn, linear(attn @ v, m.w).transpose(1, 2)).transpose(1, 2)
    if m.training and m.dropout.p > 0:
        raise ValueError("ref_gltr needs the dropout off (eval mode or p = 0)")
    return (r + branch).mean(1)


def ref_sta(m, x):
    if m.self_attention is not None:
        raise ValueError("ref_sta covers the paper's STA (self_attention=False)")
    n, c, t, h, w = x.shape
    k_parts = m.num_parts
    norms = x.pow(2).sum(1)                                                   # (N, T, H, W)
    norms = norms if m.squared_norm else norms.sqrt()
    maps = norms / norms.sum((2, 3), keepdim=True)
    rows = [[r for r in range(h) if r * k_parts // h == k] for k in range(k_parts)]
    scores = torch.stack([maps[:, :, rs].sum((2, 3)) if rs else maps.new_zeros(n, t) for rs in rows], 2)
    scores = scores / scores.sum(1, keepdim=True).clamp_min(1e-12)            # (N, T, K)
    selected, weighted = x.new_zeros(n, c), x.new_zeros(n, c)
    for k, rs in enumerate(rows):
        if not rs:
            continue
        part = x[:, :, :, rs].sum((3, 4))                                     # (N, C, T)
        best = scores[:, :, k].argmax(1)
        selected += part[torch.arange(n, device=x.device), :, best]
        weighted += (part * scores[:, None, :, k]).sum(2)
    pooled = torch.cat((selected, weighted), 1) / (h * w)
    return linear(pooled, m.fc) if isinstance(m.fc, torch.nn.Linear) else pooled


def ref_graph_branch(branch, nodes):
    emb = nodes @ branch.phi.weight.t()
    e = emb @ emb.transpose(1, 2)
    adj = e ** 2 / (e ** 2).sum(-1, keepdim=True) + torch.eye(nodes.shape[1], device=nodes.device)
    deg = adj.sum(-1)
    adj_hat = adj / torch.sqrt(deg[:, :, None] * deg[:, None, :])
    h = nodes
    for i, (layer, norm) in enumerate(zip(branch.layers, branch.norms)):
        out = adj_hat @ (h @ layer.lin.weight.t()) + layer.bias
        out = batch_norm(norm, out.reshape(-1, out.shape[-1])).reshape(out.shape)
        out = torch.where(out > 0, out, branch.negative_slope * out)
        h = out + h if i > 0 else out
    return h.max(1).values


def ref_stgcn(m, x):
    n, c, t, h, w = x.shape
    p = m.num_parts
    if h % p:
        raise ValueError("ref_stgcn slices equal patches: H must be a multiple of num_parts")
    patches = x.reshape(n, c, t, p, h // p, w).mean((4, 5)).permute(0, 2, 3, 1)   # (N, T, P, C)
    temporal = ref_graph_branch(m.temporal, patches.reshape(n, t * p, c))
    # one graph per frame; the frames go through together so that BN sees the same batch
    structural = ref_graph_branch(m.structural, patches.reshape(n * t, p, c)).reshape(n, t, c).mean(1)
    return torch.cat((x.mean((2, 3, 4)), temporal, structural), 1)


def ref_rstan(m, x):
    n, c, t = x.shape[:3]
    positions = x.flatten(3).permute(0, 2, 3, 1)                              # (N, T, HW, C)
    lstm = m.lstm
    h = x.new_zeros(n, lstm.hidden_size)
    cell = x.new_zeros(n, lstm.hidden_size)
    states = []
    for step in range(t):
        hidden = torch.tanh(linear(positions, m.spatial.feature) + linear(h, m.spatial.state)[:, None, None])
        e = linear(hidden, m.spatial.score)[..., 0]
        alpha = torch.exp(e - e.amax(-1, keepdim=True))
        alpha = alpha / alpha.sum(-1, keepdim=True)
        frames = (alpha[..., None] * positions).sum(2)                        # (N, T, C)
        eb = linear(torch.tanh(linear(frames, m.temporal.feature) + linear(h, m.temporal.state)[:, None]),
                    m.temporal.score)[..., 0]
        beta = torch.exp(eb - eb.amax(-1, keepdim=True))
        beta = beta / beta.sum(-1, keepdim=True)
        inp = (beta[..., None] * frames).sum(1)
        if m.frame_input:
            inp = torch.cat((inp, positions[:, step].mean(1)), 1)
        gates = inp @ lstm.weight_ih.t() + lstm.bias_ih + h @ lstm.weight_hh.t() + lstm.bias_hh
        i, f, g, o = gates.chunk(4, 1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(cell)
        states.append(h)
    return torch.stack(states).mean(0)


REFERENCES = {"tam": ref_tam, "gltr": ref_gltr, "sta": ref_sta, "stgcn": ref_stgcn, "rstan": ref_rstan}
