"""Attention maps over the frames of a clip: what each attention module of a model attends to.

Every attention module of the zoo inside a model is a *site*: blocks (registry ``kind == "block"``,
named by their place, e.g. ``layer3.1.attn``) and attention aggregators (``aggregator``). Forward
hooks on the site and on some of its submodules read what the site computes; no module file is
changed. Per site and frame, a map on the site's own grid:

=================================  =====================================================================
``cbam``                           its spatial gate ``Ms`` (output of the ``spatial`` ConvGate)
``bam``                            channel mean of ``M = sigmoid(Mc + Ms)`` (or ``Mc * Ms``), from the
                                   ``channel_bn`` and ``spatial`` outputs
``sse`` / ``scse``                 the sSE gate ``sigmoid(conv1x1(x))``
``triplet``                        channel mean of the summed-and-averaged three-branch gate
``se cse eca srm fca gsop ge       blocks ``y = x * gate`` (gate in [0, 1]): the ``|x|``-weighted
simam``                            channel mean of the gate, ``sum_c |y| / sum_c |x|``
``nonlocal`` (softmax modes)       attention *received* by each key position: ``mean_i softmax_j(...)``
``cc``                             criss-cross attention received, averaged over the recurrences
``mhsa``                           attention received, averaged over heads and queries
``sta`` (aggregator)               STA's map ``g`` (Eq. 1); frame weight = ``sum_k S(n,k)``, over frames to 1
``rstan`` (aggregator)             spatial ``alpha`` and temporal ``beta``, averaged over LSTM steps
``gltr`` (aggregator)              frame weight = temporal attention received (no spatial map)
anything else                      generic: channel mean of ``|y - x|`` (what the block changed; zero
                                   for a block that is the identity), or of ``|y|`` when the block
                                   changes the shape (``replace_conv2`` blocks)
=================================  =====================================================================

Gates keep their values (they lie in [0, 1]); the other maps are divided by their maximum over
the clip, so every map ends in [0, 1] and an unchanged input stays 0. Drawing:
``engine/attention_drawing.py``; the ``tools/visualize.py attention`` command:
``engine/attention_visualize.py``. Attention-received maps materialise the attention
matrix in query chunks (visualisation only, under ``no_grad``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import unwrap

log = logging.getLogger(__name__)

__all__ = ["SiteMaps", "attention_sites", "extract_attention_maps"]

GATED = ("se", "cse", "eca", "srm", "fca", "gsop", "ge", "simam")  # y = x * gate, gate in [0, 1]
CHUNK_ELEMENTS = 1 << 24  # attention-matrix entries computed at once


@dataclass
class SiteMaps:
    """Maps of one attention site. ``maps``: ``(N, T, h, w)`` in [0, 1] (``(T, h, w)`` for one clip),
    or None; ``frame_weights``: ``(N, T)`` or None; ``low``/``high``: the raw range before scaling."""

    name: str
    module: str
    what: str
    maps: torch.Tensor | None
    frame_weights: torch.Tensor | None = None
    low: float = 0.0
    high: float = 0.0


# ---------------------------------------------------------------------------------------------
# per-module extraction: f(site, x, y) -> (raw map (B, h, w) or None, what, gate?, weights or None)


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    """``(B,C,H,W) -> (B,H,W)``; temporal ``(N,C,T,H,W) -> (N*T,H,W)``."""
    return t.float().mean(1).flatten(0, -3)


def _generic(site, x, y):
    if y.shape == x.shape:
        return _channel_mean((y.float() - x.float()).abs()), "change |y - x|", False, None
    return _channel_mean(y.abs()), "response |y|", False, None


def _weighted_gate(site, x, y):
    ratio = y.float().abs().sum(1) / x.float().abs().sum(1).clamp_min(1e-12)
    return ratio.flatten(0, -3), "|x|-weighted gate", True, None


def _cbam(site, x, y):
    return site.taken("spatial")[:, 0], "spatial gate Ms", True, None


def _bam(site, x, y):
    mc = site.taken("channel_bn")[:, :, None, None]
    ms = site.taken("spatial")
    m = site.module.merge(mc, ms)
    return m.mean(1), "gate M, channel mean", True, None


def _sse(site, x, y):
    return site.module.gate(x)[:, 0].float(), "sSE gate", True, None


def _scse(site, x, y):
    return site.module.sse.gate(x)[:, 0].float(), "sSE gate", True, None


def _triplet(site, x, y):
    cw, hc = site.taken("cw")[:, 0], site.taken("hc")[:, 0]   # (B, C, W), (B, H, C)
    gate = cw.mean(1)[:, None, :] + hc.mean(2)[:, :, None]
    if site.module.hw is None:
        return gate / 2, "gate, channel mean", True, None
    return (gate + site.taken("hw")[:, 0]) / 3, "gate, channel mean", True, None


def mean_received(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """``mean`` over heads and queries of ``softmax_j(scale q_i . k_j)``: ``(B,H,N,d), (B,H,M,d) -> (B,M)``."""
    q, k = q.float(), k.float()
    step = max(1, CHUNK_ELEMENTS // (q.shape[0] * q.shape[1] * k.shape[2]))
    total = sum(torch.softmax(q[:, :, s:s + step] @ k.transpose(2, 3) * scale, -1).sum(2)
                for s in range(0, q.shape[2], step))
    return total.mean(1) / q.shape[2]


def _nonlocal(site, x, y):
    m = site.module
    if m.mode not in ("embedded_gaussian", "gaussian"):
        return _generic(site, x, y)
    q, k, _ = m.embed(x)
    received = mean_received(q[:, None], k[:, None], q.shape[-1] ** -0.5 if m.scale else 1.0)
    grid = m.pool(x[:1, :1]).shape[2:]                           # the (sub-sampled) key grid
    received = F.interpolate(received.view(-1, 1, *grid), size=x.shape[2:], mode="nearest")[:, 0]
    return received, "attention received", False, None


def criss_cross_received(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Mean attention each position receives in one criss-cross pass: ``(B,c,H,W) x2 -> (B,H,W)``."""
    q, k = q.float(), k.float()
    h, w = q.shape[2:]
    e_col = torch.einsum("bchw,bcgw->bhwg", q, k)
    e_col = e_col.masked_fill(torch.eye(h, dtype=torch.bool, device=q.device)[:, None, :], float("-inf"))
    e_row = torch.einsum("bchw,bchu->bhwu", q, k)
    a_col, a_row = torch.cat([e_col, e_row], 3).softmax(3).split([h, w], 3)
    return (a_col.sum(1).transpose(1, 2) + a_row.sum(2)) / (h * w)


def _criss_cross(site, x, y):
    passes = zip(site.captured.pop("query"), site.captured.pop("key"))
    received = torch.stack([criss_cross_received(q, k) for q, k in passes]).mean(0)
    return received, "attention received", False, None


def _mhsa(site, x, y):
    qkv = site.taken("qkv").float()
    b, n, c3 = qkv.shape
    heads = site.module.heads
    q, k, _ = qkv.view(b, n, 3, heads, c3 // 3 // heads).permute(2, 0, 3, 1, 4)
    received = mean_received(q, k, (c3 // 3 // heads) ** -0.5)
    return received.view(b, *x.shape[2:]), "attention received", False, None


def _sta(site, x, y):
    from models.attention.sta import frame_attention_maps
    m = site.module
    if m.self_attention is not None:
        n, c, t, h, w = x.shape
        x = m.self_attention(x.transpose(1, 2).reshape(n * t, c, h, w)).reshape(n, t, c, h, w).transpose(1, 2)
    maps = frame_attention_maps(x, m.squared_norm)
    score = m.scores(maps).sum(2)                                 # parts with no rows score 0
    return maps.flatten(0, 1), "map g; w = part score", False, score / score.sum(1, keepdim=True)


def _rstan(site, x, y):
    _, alphas, betas = site.module.attend(x)
    n, _, t, h, w = x.shape
    return alphas.float().mean(0).reshape(n * t, h, w), "alpha; w = beta", False, betas.float().mean(0)


def _gltr(site, x, y):
    q, k = site.taken("theta"), site.taken("phi")                 # (N, T, d)
    return None, "w = temporal attention received", False, mean_received(q[:, None], k[:, None], 1.0)


EXTRACTORS = {"cbam": (("spatial",), _cbam), "bam": (("channel_bn", "spatial"), _bam),
              "sse": ((), _sse), "scse": ((), _scse),
              "triplet": (("cw", "hc", "hw"), _triplet), "nonlocal": ((), _nonlocal),
              "cc": (("query", "key"), _criss_cross), "mhsa": (("qkv",), _mhsa),
              "sta": ((), _sta), "rstan": ((), _rstan), "gltr": (("theta", "phi"), _gltr),
              **{name: ((), _weighted_gate) for name in GATED}}


class _Site:
    """Hooks of one site; every forward call of the site adds one record."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module, self.key = name, module, module.registry_name
        taps, self.extract = EXTRACTORS.get(self.key, ((), _generic))
        self.captured: dict[str, list[torch.Tensor]] = {}
        self.records = []
        self.handles = [module.register_forward_hook(self._on_forward)]
        for path in taps:
            sub = _submodule(module, path)
            if sub is not None:
                self.handles.append(sub.register_forward_hook(self._tap(path)))

    def _tap(self, path: str):
        def hook(_module, _inputs, output):
            self.captured.setdefault(path, []).append(output.detach())
        return hook

    def taken(self, path: str) -> torch.Tensor:
        return self.captured.pop(path)[-1]

    def _on_forward(self, _module, inputs, output):
        y = output[0] if isinstance(output, tuple) else output
        self.records.append(self.extract(self, inputs[0].detach(), y.detach()))
        self.captured.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def attention_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the outermost registered blocks and aggregators (``backbone.`` dropped)."""
    sites = []
    for name, module in unwrap(model).named_modules():
        if getattr(module, "kind", None) not in ("block", "aggregator") or not hasattr(module, "registry_name"):
            continue
        if any(name.startswith(outer + ".") for outer, _ in sites):
            continue  # a block inside another block (scSE's sSE)
        sites.append((name, module))
    return [(name.removeprefix("backbone."), module) for name, module in sites]


def _site_maps(site: _Site, num_clips: int) -> SiteMaps:
    raw, what, is_gate, weights = (list(v) for v in zip(*site.records))
    maps = None if raw[0] is None else torch.cat(raw).float()         # float also under autocast
    weights = None if weights[0] is None else torch.cat(weights).float().cpu()
    low = high = 0.0
    if maps is not None:
        maps = maps.cpu()
        maps = maps.view(num_clips, -1, *maps.shape[1:])
        low, high = float(maps.min()), float(maps.max())
        maps = maps.clamp(0, 1) if is_gate[0] else maps / max(high, 1e-12)
    return SiteMaps(site.name, site.key, what[0], maps, weights, low, high)


@torch.no_grad()
def extract_attention_maps(model: nn.Module, clip: torch.Tensor) -> dict[str, SiteMaps]:
    """Run ``model`` on ``clip`` ``(C,T,H,W)`` or ``(N,C,T,H,W)`` and return the maps of every
    attention site (see the module docstring). Maps are ``(T, h, w)`` for one clip,
    ``(N, T, h, w)`` for a batch; a 3-D net with temporal stride gives fewer map frames."""
    single = clip.dim() == 4
    batch = clip[None] if single else clip
    param = next(unwrap(model).parameters(), None)
    if param is not None:
        batch = batch.to(param.device)
    sites = [_Site(name, module) for name, module in attention_sites(model)]
    try:
        model(batch)
    finally:
        for site in sites:
            site.remove()
    out = {}
    for site in sites:
        if site.records:
            m = _site_maps(site, batch.shape[0])
            if single:
                m.maps = None if m.maps is None else m.maps[0]
                m.frame_weights = None if m.frame_weights is None else m.frame_weights[0]
            out[site.name] = m
    return out
