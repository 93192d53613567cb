"""RSTAN: an LSTM whose input at every step is a spatial-temporal attention over the clip."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_attention


class AdditiveAttention(nn.Module):
    """``softmax_j(w^T tanh(W_x x_j + W_h h))`` over the last-but-one axis of ``x``."""

    def __init__(self, channels: int, hidden_size: int, attention_dim: int):
        super().__init__()
        self.feature = nn.Linear(channels, attention_dim)
        self.state = nn.Linear(hidden_size, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def weights(self, projected: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``projected = self.feature(x)`` of shape ``(N, ..., J, A)``, ``h`` ``(N, hidden)``."""
        state = self.state(h).reshape(h.shape[0], *([1] * (projected.dim() - 2)), -1)
        return torch.softmax(self.score(torch.tanh(projected + state)).squeeze(-1), -1)


@register_attention("rstan", family="spatiotemporal", kind="aggregator")
class RSTAN(nn.Module):
    """Recurrent Spatial-Temporal Attention Network, a clip aggregator ``(N,C,T,H,W) -> (N,D)``.

    Du, Wang, Qiao, "Recurrent Spatial-Temporal Attention Network for Action Recognition in
    Videos", IEEE TIP 27(3), 2018, https://doi.org/10.1109/TIP.2017.2778563 (no arXiv version).

    An LSTM runs ``T`` steps; at step ``t`` its previous state ``h_{t-1}`` attends over the
    whole clip ("a spatial-temporal action representation from all sampled frames"):

    * spatial, for every frame ``tau``: ``alpha_{t,tau,k} = softmax_k(w_s^T tanh(W_s x_{tau,k}
      + U_s h_{t-1} + b_s))`` over the ``H*W`` positions, ``z_{t,tau} = sum_k alpha x_{tau,k}``;
    * temporal: ``beta_{t,tau} = softmax_tau(w_b^T tanh(W_b z_{t,tau} + U_b h_{t-1} + b_b))``,
      ``z_t = sum_tau beta_{t,tau} z_{t,tau}``;
    * ``h_t = LSTM(z_t, h_{t-1})``; the clip feature is ``mean_t h_t`` (``out_channels =
      hidden_size``; ours, as attention LSTMs that predict at every step and average), zero
      initial state.

    With ``return_aux=True``, ``aux["losses"]`` holds doubly-stochastic attention regularisers
    (Xu et al. 2015, Sharma et al. 2015) over the steps, averaged over the clips:
    ``rstan_spatial = spatial_reg_weight * mean_tau sum_k (1 - sum_t alpha_{t,tau,k})^2`` and
    ``rstan_temporal = temporal_reg_weight * sum_tau (1 - sum_t beta_{t,tau})^2``.

    What the paper states (its abstract, the only part reachable here; the equations above are
    our reading of that design, not re-checked against Sec. 3): an LSTM whose input at every
    step is a spatial-temporal attention over all sampled frames, driven by the previous state; appearance and motion LSTMs fused by attention and trained jointly;
    an actor-attention regulariser. What is ours (the stored copies reachable while writing
    this hold only the abstract, so none of the paper's sizes or weights could be read):
    ``hidden_size = 512``, ``attention_dim = 256``, the box-free doubly-stochastic regularisers
    in place of the actor-attention one (which needs actor boxes, JHMDB) and their weights
    (1.0, Sharma et al.'s lambda), the zero initial state, the clip feature ``mean_t h_t``,
    and the backbone and frame count of the shipped config. The appearance/motion two-stream
    fusion lies outside this single-stream aggregator.

    Every step attends over the set of frames, so the feature does not depend on the frame
    order (order reaches RSTAN through its motion stream). ``frame_input=True`` (not in the
    paper) also feeds the pooled frame ``t`` to step ``t``, making the feature order-aware.
    """

    any_length = True

    def __init__(self, channels: int, hidden_size: int = 512, attention_dim: int = 256,
                 spatial_reg_weight: float = 1.0, temporal_reg_weight: float = 1.0,
                 frame_input: bool = False, num_frames: int | None = None):
        super().__init__()
        self.spatial = AdditiveAttention(channels, hidden_size, attention_dim)
        self.temporal = AdditiveAttention(channels, hidden_size, attention_dim)
        self.frame_input = frame_input
        self.lstm = nn.LSTMCell(channels * (2 if frame_input else 1), hidden_size)
        self.reg_weights = (spatial_reg_weight, temporal_reg_weight)
        self.out_channels = hidden_size

    def attend(self, x: torch.Tensor):
        """All steps: returns hidden states ``(T, N, hidden)``, ``alpha`` ``(T, N, T, HW)``,
        ``beta`` ``(T, N, T)``."""
        n, c, t = x.shape[:3]
        positions = x.flatten(3).permute(0, 2, 3, 1)                          # (N, T, HW, C)
        projected = self.spatial.feature(positions)                           # (N, T, HW, A)
        h = x.new_zeros(n, self.lstm.hidden_size)
        cell = torch.zeros_like(h)
        states, alphas, betas = [], [], []
        for step in range(t):
            alpha = self.spatial.weights(projected, h)                        # (N, T, HW)
            frames = torch.einsum("ntk,ntkc->ntc", alpha.to(positions.dtype), positions)
            beta = self.temporal.weights(self.temporal.feature(frames), h)    # (N, T)
            inp = torch.einsum("nt,ntc->nc", beta.to(frames.dtype), frames)
            if self.frame_input:
                inp = torch.cat((inp, positions[:, step].mean(1)), 1)
            h, cell = self.lstm(inp, (h, cell))
            states.append(h)
            alphas.append(alpha)
            betas.append(beta)
        return torch.stack(states), torch.stack(alphas), torch.stack(betas)

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        states, alphas, betas = self.attend(x)
        feat = states.mean(0)
        if not return_aux:
            return feat
        spatial = (1 - alphas.float().sum(0)).square().sum(-1).mean()        # mean over clips, frames
        temporal = (1 - betas.float().sum(0)).square().sum(-1).mean()         # mean over clips
        losses = {"rstan_spatial": self.reg_weights[0] * spatial,
                  "rstan_temporal": self.reg_weights[1] * temporal}
        return feat, {"losses": losses, "features": {}}
