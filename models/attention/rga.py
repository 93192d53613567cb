"""Relation-aware global attention (``rga``): spatial (RGA-S) and channel (RGA-C) relations."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import Layout, spatial_size_of_stage
from .registry import register_attention


def embed(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN + ReLU, the official embedding functions."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def attention_mlp(in_channels: int, down_ratio: int) -> nn.Sequential:
    """The official ``W_spatial`` / ``W_channel``: conv-BN-ReLU-conv-BN to one logit."""
    hidden = max(1, in_channels // down_ratio)
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                         nn.ReLU(), nn.Conv2d(hidden, 1, 1, bias=False), nn.BatchNorm2d(1))


def resample_position_weight(weight: torch.Tensor, ref_size, size) -> torch.Tensor:
    """Weights indexed by positions of the ``ref_size`` grid, ``(out, k * H0 * W0)``, resampled to
    the ``size`` grid (bilinear, antialiased) and scaled by ``H0 W0 / (H W)`` so that sums over
    positions keep their scale. Unchanged when ``size == ref_size``."""
    (h0, w0), (h, w) = tuple(ref_size), tuple(size)
    if (h0, w0) == (h, w):
        return weight
    maps = weight.reshape(-1, 1, h0, w0)
    maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return maps.reshape(weight.shape[0], -1) * (h0 * w0 / (h * w))


def relation_embedding(theta: torch.Tensor, phi: torch.Tensor, w_in: torch.Tensor,
                       w_out: torch.Tensor) -> torch.Tensor:
    """``W_in r_in + W_out r_out`` for every node, without forming the relation matrix.

    ``theta, phi``: ``(B, d, n)`` node embeddings; relations ``R = theta^T phi`` (``n x n``).
    Node ``i`` has ``r_in = R[i, :]`` and ``r_out = R[:, i]`` (the official ``G_in``/``G_out``
    channels); ``w_in, w_out``: ``(e, n)``. Since ``W_in R[i, :]^T = theta_i^T (phi W_in^T)``, the
    result ``(B, e, n)`` costs ``O(n d e)`` instead of ``O(n² e)``.
    """
    w_in, w_out = w_in.to(theta.dtype), w_out.to(theta.dtype)
    out = torch.matmul(theta.transpose(1, 2), torch.matmul(phi, w_in.t()))
    out = out + torch.matmul(phi.transpose(1, 2), torch.matmul(theta, w_out.t()))
    return out.transpose(1, 2)


@register_attention("rga", family="hybrid", kind="block", aliases=("rga_sc",))
class RelationAwareGlobalAttention(nn.Module):
    """Relation-aware global attention module.

    Zhang, Lan, Zeng, Jin, Chen, "Relation-Aware Global Attention for Person
    Re-identification", CVPR 2020, https://arxiv.org/abs/1904.02998

    Nodes are positions (RGA-S) or channels (RGA-C). Relations ``r_ij = theta(x_i)^T phi(x_j)``;
    node ``i`` gets ``y_i = [pool_c(psi(x_i)), phi_r([r_i,:, r_:,i])]`` and its weight
    ``a_i = sigmoid(W2 ReLU(W1 y_i))`` (Sec. 3). ``mode="sc"`` (the paper's RGA-SC): spatial,
    then channel on the spatially attended map; ``"s"`` / ``"c"`` alone. Layer layout (1x1 conv
    + BN + ReLU embeddings, channel ratio 8, spatial ratio 8, down ratio 8, final BN before the
    sigmoid) as in the official code.

    Size: RGA-S's relation embedding reads a node's relations to ALL ``HW`` positions, and
    RGA-C's nodes are whole ``HW`` maps, so the official layers have ``HW`` input channels fixed
    at construction. Here those position-indexed weights are defined on the ``spatial_size``
    grid (default 16x8: the last stages of the official 256x128 ReID model) and bilinearly
    resampled to the input grid (scaled by ``H0 W0 / HW``) at other sizes: exactly the official
    module at ``spatial_size``, a smooth extension elsewhere. The paper layout (official RGA-SC
    ReID model: one module after each of the four stages) builds each module for its own
    stage's map (64x32, 32x16, 16x8, 16x8 at 256x128 with last stride 1), so nothing is resampled
    there. The relation matrix (``HW x HW``
    or ``C x C``) is never formed: its linear embedding is computed by associativity
    (:func:`relation_embedding`), which equals the official conv over ``[G_in, G_out]``.
    """

    placement = "stage_end"
    paper_layout = Layout(per_stage=spatial_size_of_stage, source=(
        "official RGA-SC ReID code: after each of the four stages, sized to its map"))

    def __init__(self, channels: int, mode: str = "sc", spatial_size=(16, 8),
                 channel_ratio: int = 8, spatial_ratio: int = 8, down_ratio: int = 8):
        super().__init__()
        if mode not in ("sc", "s", "c"):
            raise ValueError(f"mode must be 'sc', 's' or 'c', got {mode!r}")
        self.mode, self.spatial_size = mode, tuple(spatial_size)
        n0 = self.spatial_size[0] * self.spatial_size[1]
        inter_c = max(1, channels // channel_ratio)
        inter_s = max(1, n0 // spatial_ratio)
        if "s" in mode:
            self.theta_s, self.phi_s, self.gx_s = (embed(channels, inter_c) for _ in range(3))
            self.gg_s_weight = nn.Parameter(torch.empty(inter_s, 2 * n0))  # official gg_spatial
            self.gg_s_bn = nn.BatchNorm1d(inter_s)
            self.w_s = attention_mlp(1 + inter_s, down_ratio)
        if "c" in mode:
            # official theta/phi/gx_channel: 1x1 convs with n0 input channels = linear over positions
            self.theta_c_weight, self.phi_c_weight, self.gx_c_weight = (
                nn.Parameter(torch.empty(inter_s, n0)) for _ in range(3))
            self.theta_c_bn, self.phi_c_bn, self.gx_c_bn = (
                nn.BatchNorm1d(inter_s) for _ in range(3))
            self.gg_c_weight = nn.Parameter(torch.empty(inter_c, 2 * channels))  # official gg_channel
            self.gg_c_bn = nn.BatchNorm1d(inter_c)
            self.w_c = attention_mlp(1 + inter_c, down_ratio)
        for name, p in self.named_parameters():
            if name.endswith("_weight"):
                nn.init.kaiming_uniform_(p, a=5 ** 0.5)  # nn.Conv2d's default init

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """RGA-S weights ``(B, 1, H, W)`` in (0, 1)."""
        b, _, h, w = x.shape
        weight = resample_position_weight(self.gg_s_weight, self.spatial_size, (h, w))
        w_in, w_out = weight.reshape(weight.shape[0], 2, h * w).unbind(1)
        relations = relation_embedding(self.theta_s(x).flatten(2), self.phi_s(x).flatten(2),
                                       w_in, w_out)
        relations = F.relu(self.gg_s_bn(relations)).reshape(b, -1, h, w)
        own = self.gx_s(x).mean(1, keepdim=True)
        return torch.sigmoid(self.w_s(torch.cat((own, relations), 1)))

    def channel_attention(self, x: torch.Tensor) -> torch.Tensor:
        """RGA-C weights ``(B, C, 1, 1)`` in (0, 1)."""
        b, c, h, w = x.shape
        nodes = x.flatten(2).transpose(1, 2)                              # (B, HW, C)

        def position_linear(weight, bn):
            weight = resample_position_weight(weight, self.spatial_size, (h, w))
            return F.relu(bn(torch.matmul(weight.to(nodes.dtype), nodes)))  # (B, inter_s, C)

        theta = position_linear(self.theta_c_weight, self.theta_c_bn)
        phi = position_linear(self.phi_c_weight, self.phi_c_bn)
        w_in, w_out = self.gg_c_weight.reshape(-1, 2, c).unbind(1)
        relations = F.relu(self.gg_c_bn(relation_embedding(theta, phi, w_in, w_out)))
        own = position_linear(self.gx_c_weight, self.gx_c_bn).mean(1, keepdim=True)
        y = torch.cat((own, relations), 1).unsqueeze(3)                   # (B, 1 + inter_c, C, 1)
        return torch.sigmoid(self.w_c(y)).reshape(b, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "s" in self.mode:
            x = self.spatial_attention(x) * x
        if "c" in self.mode:
            x = self.channel_attention(x) * x
        return x
