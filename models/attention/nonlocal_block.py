"""Non-local block (2-D, per frame)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._ops import fused_attention, token_max_pool_2x2
from .layout import Layout
from .registry import register_attention

MODES = ("embedded_gaussian", "gaussian", "dot", "concat")


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, HW, C)``, contiguous (SDPA's fast path needs it)."""
    return x.flatten(2).transpose(1, 2).contiguous()


def conv_tokens(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A 1x1 (x1) conv to contiguous tokens ``(B, C, *grid) -> (B, positions, C_out)``; a clip map
    ``(N, C, T, H, W)`` goes through ``conv2d`` as ``(T*H, W)`` maps with the conv's own weights
    (same sums; conv3d's CPU backward holds one more map-sized buffer). Measured against a batched
    matmul straight into token layout: that saves the transposed copy in float32 but under bf16
    autocast casts x and the expanded weights per projection and costs more than it saves."""
    weight = conv.weight
    if x.dim() == 5:
        x, weight = x.flatten(2, 3), weight.flatten(2, 3)
    return _tokens(F.conv2d(x, weight, conv.bias))


def pool_tokens(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """2x2 ceil-mode max pooling of every ``h x w`` frame of tokens ``(B, F*h*w, D)`` (``F`` frames
    per item) -> ``(B, F*ceil(h/2)*ceil(w/2), D)``, contiguous."""
    b, n, d = t.shape
    return token_max_pool_2x2(t.reshape(-1, h, w, d)).view(b, -1, d)


def concat_relation(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``y_i = sum_j relu(a_i + b_j) v_j`` for ``a (B,N)``, ``b (B,M)``, ``v (B,M,D)``.

    ``relu(a_i + b_j)`` is non-zero only for ``b_j > -a_i``: with ``b`` sorted, that set is a
    suffix, so ``y_i = a_i * S_v(i) + S_bv(i)`` with suffix sums ``S_v``, ``S_bv`` of ``v`` and
    ``b v``. Exact (ties contribute 0 either way), O((N + M) D) memory, no ``N x M`` matrix.
    """
    b_sorted, order = b.sort(dim=1)
    v_sorted = v.gather(1, order.unsqueeze(2).expand_as(v))

    def suffix_sums(t):  # row m holds sum over j >= m; one extra zero row for "none"
        s = t.flip(1).cumsum(1).flip(1)
        return torch.cat([s, s.new_zeros(s.shape[0], 1, s.shape[2])], dim=1)

    start = torch.searchsorted(b_sorted, (-a).contiguous(), right=True)   # first j with b_j > -a_i
    index = start.unsqueeze(2).expand(-1, -1, v.shape[2])
    s_v = suffix_sums(v_sorted).gather(1, index)
    s_bv = suffix_sums(b_sorted.unsqueeze(2) * v_sorted).gather(1, index)
    return a.unsqueeze(2) * s_v + s_bv


@register_attention("nonlocal", family="spatial", kind="block", aliases=("non_local", "nl"))
class NonLocal2d(nn.Module):
    """Non-local block.

    Wang, Girshick, Gupta, He, "Non-local Neural Networks", CVPR 2018,
    https://arxiv.org/abs/1711.07971

    ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)`` (Eq. 1), ``z_i = BN(W_z y_i) + x_i`` (Eq. 6), with
    1x1 convs ``theta, phi, g: C -> C/2`` (``reduction=2``) and ``W_z: C/2 -> C``. Pairwise
    functions (Sec. 3.2), ``mode``:

    * ``embedded_gaussian`` (default): ``softmax_j(theta_i^T phi_j)``;
    * ``gaussian``: ``softmax_j(x_i^T x_j)`` (no embedding; ``g`` is still a 1x1 conv);
    * ``dot``: ``theta_i^T phi_j / N`` (``N`` = number of ``j`` positions), computed as
      ``theta_i^T (sum_j phi_j g_j^T) / N`` so no ``N x N`` matrix exists;
    * ``concat``: ``relu(w_f^T [theta_i, phi_j]) / N``, computed exactly by
      :func:`concat_relation` (sort + suffix sums) instead of an ``N x N`` matrix.

    The paper has no ``1/sqrt(d)`` in the softmax; ``scale=True`` adds it (mmaction2 style; the
    released Caffe2 code also scales by default, ``USE_SCALE``: the paper wins here).
    The two softmax modes run through ``F.scaled_dot_product_attention``.
    BN weight (gamma) is zero-initialised (Sec. 4.1), so a fresh block is the identity and
    only ``W_z``'s BN gets a gradient at init; convs ``N(0, 0.01)`` with zero bias (official
    ``CONV_INIT_STD``). ``sub_sample=True`` (default: "we use these efficient modifications for
    all non-local blocks studied in this paper", Sec. 3.3; official ``USE_MAXPOOL = True``)
    max-pools ``phi`` and ``g`` by 2x2 after the convs as the paper says (the Caffe2 code pools
    ``x`` before them); ``ceil_mode`` so no position is dropped on odd maps. ``theta, phi, g`` carry biases as in the released Caffe2 code; ``W_z`` has none (the
    BN after it makes one redundant). Placement: after a residual block
    (the paper adds blocks to res3/res4). The seed article lists Non-local with no code.
    """

    placement = "after_block"
    paper_layout = Layout(stages=(2, 3), units="every_other", source=(
        "paper: 5 blocks after every other unit of res3 and res4 (here per frame)"))

    def __init__(self, channels: int, reduction: int = 2, mode: str = "embedded_gaussian",
                 sub_sample: bool = True, scale: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.scale, self.sub_sample = mode, scale, sub_sample
        inner = max(1, channels // reduction)
        self.inner_channels = inner
        self.g = nn.Conv2d(channels, inner, 1)
        if mode != "gaussian":
            self.theta = nn.Conv2d(channels, inner, 1)
            self.phi = nn.Conv2d(channels, inner, 1)
        if mode == "concat":
            self.concat_project = nn.Linear(2 * inner, 1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if sub_sample else nn.Identity()
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)
        for conv in (m for m in self.modules() if isinstance(m, nn.Conv2d)):
            nn.init.normal_(conv.weight, std=0.01)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def embed(self, x: torch.Tensor):
        """Queries ``(B,N,d)``, keys ``(B,M,d)`` and values ``(B,M,C/2)`` as contiguous token
        matrices, projected straight into token layout and pooled there (``self.pool``'s function)."""
        h, w = x.shape[2:]
        pool = (lambda t: pool_tokens(t, h, w)) if self.sub_sample else (lambda t: t)
        if self.mode == "gaussian":
            q = _tokens(x)
            k = pool(q)
        else:
            q, k = conv_tokens(x, self.theta), pool(conv_tokens(x, self.phi))
        return q, k, pool(conv_tokens(x, self.g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.embed(x)
        if self.mode in ("embedded_gaussian", "gaussian"):
            scale = q.shape[-1] ** -0.5 if self.scale else 1.0
            y = fused_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale).squeeze(1)
        elif self.mode == "dot":
            y = torch.bmm(q, torch.bmm(k.transpose(1, 2), v)) / k.shape[1]
        else:
            # long running sums: at least float32, also under bf16 autocast
            dtype = torch.promote_types(v.dtype, torch.float32)
            with torch.autocast(x.device.type, enabled=False):
                w_theta, w_phi = self.concat_project.weight.to(dtype).view(2, -1)
                y = concat_relation(q.to(dtype) @ w_theta, k.to(dtype) @ w_phi, v.to(dtype))
            y = (y / k.shape[1]).to(v.dtype)
        y = y.transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:])
        return x + self.bn(self.out(y))
