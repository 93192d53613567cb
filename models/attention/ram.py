"""Recurrent Attention Model (``ram``): hard glimpses chosen by a policy trained with REINFORCE."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_attention


def glimpse_sensor(x: torch.Tensor, loc: torch.Tensor, patch_size: int, num_scales: int) -> torch.Tensor:
    """Retina ``rho(x, l)``: ``num_scales`` square patches centred at ``loc``, all ``patch_size``².

    ``x``: ``(B, C, H, W)``; ``loc``: ``(B, 2)`` as ``(x, y)`` in [-1, 1], (0, 0) the map centre and
    (-1, -1) its top-left corner (paper, Sec. 4). Patch ``s`` is ``patch_size * 2**s`` pixels wide,
    read at native resolution by one batched ``grid_sample`` (bilinear, zeros outside the map,
    ``align_corners=False``), then average-pooled by ``2**s`` to ``patch_size``.
    Returns ``(B, num_scales, C, patch_size, patch_size)``.
    """
    b, c, h, w = x.shape
    offsets, sizes = [], []
    for s in range(num_scales):
        size = patch_size * 2 ** s
        d = torch.arange(size, device=x.device, dtype=torch.float32) - (size - 1) / 2
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        offsets.append(torch.stack((dx * (2.0 / w), dy * (2.0 / h)), dim=-1).reshape(-1, 2))
        sizes.append(size)
    grid = loc.float()[:, None, None, :] + torch.cat(offsets)[None, None]      # (B, 1, M, 2)
    samples = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros",
                            align_corners=False)                                 # (B, C, 1, M)
    patches = torch.split(samples.flatten(2), [n * n for n in sizes], dim=2)
    return torch.stack([F.avg_pool2d(p.reshape(b, c, n, n), n // patch_size)
                        for p, n in zip(patches, sizes)], dim=1)


@register_attention("ram", family="spatial", kind="head", aliases=("recurrent_attention",))
class RecurrentAttentionModel(nn.Module):
    """Recurrent Attention Model (RAM) as a classification head on a feature map.

    Mnih, Heess, Graves, Kavukcuoglu, "Recurrent Models of Visual Attention", NeurIPS 2014,
    https://arxiv.org/abs/1406.6247

    Sec. 4: glimpse network ``g = Rect(Linear(h_g) + Linear(h_l))`` with
    ``h_g = Rect(Linear(rho(x, l)))``, ``h_l = Rect(Linear(l))`` (128, 128 -> 256); core
    ``h_t = Rect(Linear(h_{t-1}) + Linear(g_t))`` (256); location policy a two-component Gaussian
    with fixed std around ``f_l(h) = Linear(h)``; the classifier ``f_a`` reads the state after the
    last glimpse. Defaults: the paper's translated-MNIST setting, 8 glimpses of 12x12 with
    3 scales. The std is not given in the paper; 0.11 is the value of the Torch reproduction
    (``locatorStd``). Not fixed by the paper either, our choices: the first location comes from
    the location network on ``h_0 = 0`` (a learned start, sampled like the others); the baseline
    ``b_t = Linear(h_{t-1})`` sees a detached state, so only its own MSE trains it; at eval the
    policy mean is used (deterministic). Locations are not squashed (paper: plain Linear).
    ``Linear(rho)`` has ``C * num_scales * patch_size² * 128`` weights: on deep feature maps
    use a smaller ``patch_size`` / ``num_scales``.

    ``forward(x, return_aux=True)`` also returns ``aux`` with ``log_probs (B, T)``,
    ``baselines (B, T)``, ``locations (B, T, 2)`` for :func:`ram_loss` (and empty ``losses`` /
    ``features`` dicts: the REINFORCE loss needs the labels).
    """

    def __init__(self, channels: int, num_classes: int, num_glimpses: int = 8, patch_size: int = 12,
                 num_scales: int = 3, std: float = 0.11, glimpse_hidden: int = 128,
                 hidden_size: int = 256):
        super().__init__()
        self.num_glimpses, self.patch_size, self.num_scales, self.std = (
            num_glimpses, patch_size, num_scales, std)
        self.hidden_size = hidden_size
        retina = channels * num_scales * patch_size ** 2
        self.glimpse_what = nn.Linear(retina, glimpse_hidden)          # h_g
        self.glimpse_where = nn.Linear(2, glimpse_hidden)              # h_l
        self.glimpse_what_out = nn.Linear(glimpse_hidden, hidden_size)
        self.glimpse_where_out = nn.Linear(glimpse_hidden, hidden_size)
        self.core_state = nn.Linear(hidden_size, hidden_size)
        self.core_input = nn.Linear(hidden_size, hidden_size)
        self.location = nn.Linear(hidden_size, 2)
        self.baseline = nn.Linear(hidden_size, 1)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def glimpse(self, x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        rho = glimpse_sensor(x, loc, self.patch_size, self.num_scales).flatten(1)
        h_g = F.relu(self.glimpse_what(rho))
        h_l = F.relu(self.glimpse_where(loc.to(self.glimpse_where.weight.dtype)))
        return F.relu(self.glimpse_what_out(h_g) + self.glimpse_where_out(h_l))

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        h = x.new_zeros(x.shape[0], self.hidden_size)
        log_probs, baselines, locations = [], [], []
        for _ in range(self.num_glimpses):
            mean = self.location(h).float()
            baselines.append(self.baseline(h.detach()).float().squeeze(1))
            loc = mean.detach()
            if self.training:
                loc = loc + self.std * torch.randn_like(loc)
            log_probs.append(gaussian_log_prob(loc, mean, self.std))
            locations.append(loc)
            h = F.relu(self.core_state(h) + self.core_input(self.glimpse(x, loc)))
        logits = self.classifier(h)
        if not return_aux:
            return logits
        aux = {"losses": {}, "features": {}, "log_probs": torch.stack(log_probs, 1),
               "baselines": torch.stack(baselines, 1), "locations": torch.stack(locations, 1)}
        return logits, aux


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """``log N(sample; mean, std² I)`` summed over the last dim."""
    z = (sample - mean) / std
    return (-0.5 * z * z - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def ram_loss(logits: torch.Tensor, aux: dict, target: torch.Tensor) -> torch.Tensor:
    """RAM's hybrid loss (Sec. 3.2): NLL of the label + REINFORCE + baseline MSE.

    Reward ``R = 1`` when the prediction after the last glimpse is correct, else 0, given at the
    end so every step's return is ``R``; REINFORCE term ``-sum_t log pi(l_t) (R - b_t)`` with the
    advantage detached; the baseline regresses ``R`` by squared error. Averaged over the batch.
    """
    reward = (logits.argmax(1) == target).float()
    baselines = aux["baselines"]
    advantage = (reward[:, None] - baselines).detach()
    reinforce = -(aux["log_probs"] * advantage).sum(1).mean()
    baseline_mse = F.mse_loss(baselines, reward[:, None].expand_as(baselines))
    return F.cross_entropy(logits.float(), target) + reinforce + baseline_mse
