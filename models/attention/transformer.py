"""Transformer attention: a ViT encoder block over a feature map and a DETR-style decoder
that pools a clip into a few learned-query embeddings."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout
from .registry import register_attention
from .sasa import divisor_at_most


class MultiHeadAttention(nn.Module):
    """``softmax(Q K^T / sqrt(d)) V`` per head through ``F.scaled_dot_product_attention``,
    with separate q/k/v input projections (bias) and an output projection (bias)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, heads, L, D/heads)``, contiguous."""
        return t.unflatten(2, (self.heads, -1)).transpose(1, 2).contiguous()

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.q_proj(query))
        k = self.split_heads(self.k_proj(key))
        v = self.split_heads(self.v_proj(value))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).flatten(2))


@register_attention("mhsa", family="spatial", kind="block", aliases=("vit", "vit_block"))
class ViTEncoderBlock(nn.Module):
    """Transformer encoder block (ViT) over the ``H x W`` positions of a feature map.

    Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
    Scale", ICLR 2021, https://arxiv.org/abs/2010.11929

    ``z0 = x + E_pos`` (Eq. 1), ``z' = MSA(LN(z0)) + z0`` (Eq. 2), ``z = MLP(LN(z')) + z'``
    (Eq. 3) over the ``HW`` tokens (pre-norm, LayerNorm eps 1e-6 as the official JAX code,
    MLP ratio 4 with exact GELU, qkv with bias, ``1/sqrt(d)`` scaling, SDPA).
    ``E_pos`` is a learnable ``pos_size`` grid (default 14 x 14, ViT-B/16 at 224 px;
    ``N(0, 0.02)`` truncated init) resized bicubically (``align_corners=False``, the way ViT
    fine-tunes at a new resolution) to every map size, so any ``H x W`` works.
    Heads default 8; when 8 does not divide ``channels`` the largest divisor of ``channels``
    below 8 is used (e.g. 6 for 36 channels). Dropout 0 (ViT fine-tuning setting).
    Placement: after a residual block. The seed article lists ViT with no code.
    """

    placement = "after_block"
    paper_layout = Layout(stages=(4,), units="last", source=(
        "ours: one block on the res5 output (ViT is not a ResNet)"))

    def __init__(self, channels: int, heads: int = 8, mlp_ratio: float = 4.0,
                 pos_size: tuple[int, int] = (14, 14), dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.heads = divisor_at_most(channels, heads)
        self.attn_dropout = attn_dropout
        self.pos_embed = nn.Parameter(torch.zeros(1, channels, *pos_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, channels), nn.Dropout(dropout))
        self.proj_drop = nn.Dropout(dropout)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """``(1, C, h, w)``: the learnt grid, bicubically resized when the size differs."""
        if tuple(self.pos_embed.shape[2:]) == (h, w):
            return self.pos_embed
        return F.interpolate(self.pos_embed, size=(h, w), mode="bicubic", align_corners=False)

    def attention(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        qkv = self.qkv(t).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = (z.contiguous() for z in qkv.unbind(0))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = (x + self.position_embedding(h, w)).flatten(2).transpose(1, 2)    # (B, HW, C)
        t = t + self.attention(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


def sine_encoding_1d(length: int, dims: int, temperature: float = 10000.0, device=None) -> torch.Tensor:
    """DETR's normalised sine encoding of positions ``1..length``: ``(length, dims)``.

    ``p = i / length * 2 pi``; channel ``j`` is ``sin`` (even ``j``) or ``cos`` (odd ``j``) of
    ``p / temperature^(2 floor(j/2) / dims)``.
    """
    pos = torch.arange(1, length + 1, dtype=torch.float32, device=device) / (length + 1e-6) * 2 * math.pi
    j = torch.arange(dims, dtype=torch.float32, device=device)
    angles = pos[:, None] / temperature ** (2 * torch.div(j, 2, rounding_mode="floor") / dims)
    return torch.where(j.remainder(2) == 0, angles.sin(), angles.cos())


def sine_encoding_parts(t: int, h: int, w: int, channels: int, temperature: float = 10000.0,
                        device=None) -> list[torch.Tensor]:
    """The time, row and column tables ``(t, c_t)``, ``(h, c_yx)``, ``(w, c_yx)`` whose
    concatenation along channels is the encoding of each token (see ``sine_encoding_3d``)."""
    c_yx = (channels // 3) // 2 * 2
    return [sine_encoding_1d(t, channels - 2 * c_yx, temperature, device),
            sine_encoding_1d(h, c_yx, temperature, device), sine_encoding_1d(w, c_yx, temperature, device)]


def sine_encoding_3d(t: int, h: int, w: int, channels: int, temperature: float = 10000.0,
                     device=None) -> torch.Tensor:
    """``(t*h*w, channels)``: ``[time | y | x]`` sine encodings concatenated (tokens in
    ``t, h, w`` order); ``y`` and ``x`` get ``2*floor(channels/6)`` channels each, time the rest."""
    pt, py, px = sine_encoding_parts(t, h, w, channels, temperature, device)
    parts = (pt[:, None, None, :].expand(t, h, w, -1), py[None, :, None, :].expand(t, h, w, -1),
             px[None, None, :, :].expand(t, h, w, -1))
    return torch.cat(parts, dim=3).reshape(t * h * w, channels)


class TokenCrossAttention(MultiHeadAttention):
    """Multi-head cross-attention of a few queries to many tokens that never projects the tokens.

    Same parameters and result as :class:`MultiHeadAttention` with keys ``m_j + p_j`` and values
    ``m_j`` (DETR's cross-attention), rewritten per head ``h`` with ``W_k^h, W_v^h`` (``d x C``):

    * ``q_h . (W_k^h (m_j + p_j) + b_k^h) = (W_k^h^T q_h) . (m_j + p_j) + q_h . b_k^h``; the last
      term is the same for every token (the softmax cancels it: ``k_proj.bias`` gets a zero gradient);
    * ``sum_j w_j (W_v^h m_j + b_v^h) = W_v^h (sum_j w_j m_j) + b_v^h sum_j w_j``.

    So the work is two ``(heads*queries) x C x tokens`` products with the token map as it lies,
    channel-major ``(N, C, L)``, instead of projecting all ``L`` tokens twice (``2 L C^2``) and
    keeping ``(N, L, C)`` keys and values; the position term ``(W_k^h^T q_h) . p_j`` splits into
    the time, row and column tables (``sine_encoding_parts``). The only ``L``-long tensors are the
    ``(N, heads*queries, L)`` weights. Dropout acts on the weights, as SDPA's ``dropout_p``.
    """

    def forward(self, query: torch.Tensor, tokens: torch.Tensor, encodings) -> torch.Tensor:
        """``query (N, Q, C)``, ``tokens (N, C, L)`` with ``L = t*h*w`` in that order and
        ``encodings`` the ``(t, .)``, ``(h, .)``, ``(w, .)`` tables of ``sine_encoding_parts``."""
        n, num_q, c = query.shape
        heads, d = self.heads, c // self.heads
        q = self.q_proj(query).view(n, num_q, heads, d)
        a = torch.einsum("nqhd,hdc->nhqc", q, self.k_proj.weight.view(heads, d, c)) * d ** -0.5
        a = a.reshape(n, heads * num_q, c).to(tokens.dtype)
        split = [e.shape[1] for e in encodings]
        st, sy, sx = (part @ e.t().to(a.dtype) for part, e in zip(a.split(split, dim=2), encodings))
        position = (st[:, :, :, None, None] + sy[:, :, None, :, None] + sx[:, :, None, None, :]).flatten(2)
        # q . b_k: the same for every token, so the softmax cancels it; kept so that k_proj.bias stays
        # in the graph (zero gradient, as in the projected form; DDP expects every parameter used)
        key_bias = torch.einsum("nqhd,hd->nhq", q, self.k_proj.bias.view(heads, d)) * d ** -0.5
        position = position + key_bias.reshape(n, heads * num_q, 1).to(position.dtype)
        weights = torch.baddbmm(position, a, tokens).softmax(-1)                  # (N, heads*Q, L)
        dropped = self.training and self.dropout > 0
        if dropped:
            weights = F.dropout(weights, self.dropout)
        pooled = torch.bmm(weights.to(tokens.dtype), tokens.transpose(1, 2))     # (N, heads*Q, C)
        out = torch.einsum("nhqc,hdc->nqhd", pooled.view(n, heads, num_q, c), self.v_proj.weight.view(heads, d, c))
        bias = self.v_proj.bias.view(heads, d)
        if dropped:
            bias = bias * weights.sum(-1).view(n, heads, num_q).transpose(1, 2)[..., None]
        return self.out_proj((out + bias).reshape(n, num_q, c))


class DETRDecoderLayer(nn.Module):
    """DETR decoder layer, post-norm: self-attention among queries (query pos on q and k),
    cross-attention to the tokens (query pos on q, token pos on k), ReLU FFN; each sub-layer
    ``LN(t + dropout(sublayer(t)))``."""

    def __init__(self, dim: int, heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_attn = TokenCrossAttention(dim, heads, dropout)
        self.linear1, self.linear2 = nn.Linear(dim, dim_feedforward), nn.Linear(dim_feedforward, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt, query_pos, tokens, encodings):
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout(self.self_attn(q, q, tgt)))
        tgt = self.norm2(tgt + self.dropout(self.cross_attn(tgt + query_pos, tokens, encodings)))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout(ffn))


@register_attention("detr", family="spatial", kind="aggregator", aliases=("detr_decoder",))
class DETRDecoderAggregator(nn.Module):
    """Clip embedding from a DETR-style transformer decoder over all ``T x H x W`` tokens.

    Carion, Massa, Synnaeve, Usunier, Kirillov, Zagoruyko, "End-to-End Object Detection with
    Transformers", ECCV 2020, https://arxiv.org/abs/2005.12872

    ``num_queries`` learnt object queries (zero targets plus learnt query positions, as DETR)
    go through ``num_layers`` post-norm decoder layers (self-attention among queries, then
    cross-attention to the tokens of ``(N, C, T, H, W)``, then a ReLU FFN), then the decoder's
    final LayerNorm. Fixed sine encodings (DETR's normalised ``2 pi`` version, temperature
    10000) of time, row and column are concatenated and added to the keys of the
    cross-attention only (values are the raw tokens). ``d_model = C`` (no input projection).
    DETR's values: 8 heads (fallback: largest divisor of ``C`` below 8), FFN width 2048,
    dropout 0.1, Xavier-uniform init of the decoder, ``N(0, 1)`` query embeddings.
    Departures, for a clip embedding instead of 100 box slots: ``num_queries = 8`` (a few
    part/appearance slots, like the multi-query pooling used in video re-ID), ``num_layers = 2``
    (DETR's 6 layers refine box slots with no encoder in front here; on an already deep
    backbone feature two layers let the queries first split the clip, then attend, at a third
    of the cost). Output: the mean of the query embeddings (``reduce="mean"``, ``D = C``, so
    the width matches the other aggregators) or their concatenation (``reduce="concat"``,
    ``D = num_queries * C``). The cross-attention never projects the ``THW`` tokens
    (:class:`TokenCrossAttention`: the key and value projections move to the queries' side, an
    exact rewrite), so neither keys, values nor a token copy exist: the only ``THW``-long tensors
    are the ``heads x Q x THW`` attention weights. With ``Q = 8`` queries a fused SDPA kernel has
    too little to parallelise over; two plain batched products do the work.
    The seed article lists DETR with no code.
    """

    def __init__(self, channels: int, num_queries: int = 8, num_layers: int = 2, heads: int = 8,
                 dim_feedforward: int = 2048, dropout: float = 0.1, reduce: str = "mean",
                 temperature: float = 10000.0):
        super().__init__()
        if reduce not in ("mean", "concat"):
            raise ValueError(f"reduce must be 'mean' or 'concat', got {reduce!r}")
        self.reduce, self.temperature = reduce, temperature
        self.heads = divisor_at_most(channels, heads)
        self.query_embed = nn.Embedding(num_queries, channels)
        self.layers = nn.ModuleList(DETRDecoderLayer(channels, self.heads, dim_feedforward, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(channels)
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.out_channels = channels if reduce == "mean" else channels * num_queries

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        tokens = x.flatten(2)                                                  # (N, C, THW), as it lies
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):  # cast once
            tokens = tokens.to(torch.get_autocast_dtype(x.device.type))
        encodings = sine_encoding_parts(t, h, w, c, self.temperature, x.device)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(n, -1, -1)
        tgt = torch.zeros_like(query_pos)
        for layer in self.layers:
            tgt = layer(tgt, query_pos, tokens, encodings)
        tgt = self.norm(tgt)
        return tgt.mean(dim=1) if self.reduce == "mean" else tgt.flatten(1)
