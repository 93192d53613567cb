"""Turning frame feature maps ``(N,C,T,H,W)`` into clip embeddings ``(N,D)``."""
from __future__ import annotations

import inspect

import torch
from torch import nn

from models.attention import build_attention, get_attention_class


class TemporalPool(nn.Module):
    """Spatial global average pooling, then temporal average (``avg``, TP in Gao & Nevatia 2018)
    or max pooling over frames."""

    any_length = True

    def __init__(self, channels: int, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
        self.mode, self.out_channels = mode, channels

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        frames = x.mean((3, 4))  # (N,C,T)
        feat = frames.mean(2) if self.mode == "avg" else frames.amax(2)
        return (feat, {}) if return_aux else feat


def build_aggregator(name: str, channels: int, num_frames: int, kwargs: dict | None = None) -> nn.Module:
    """``avg``/``max`` temporal pooling, or any registered attention ``aggregator`` by name."""
    kwargs = dict(kwargs or {})
    if name in ("avg", "max"):
        return TemporalPool(channels, name, **kwargs)
    cls = get_attention_class(name)
    if cls.kind != "aggregator":
        raise ValueError(f"attention {name!r} is a {cls.kind}; MODEL.AGGREGATOR.NAME needs an aggregator "
                         f"(avg, max, or one of the registered aggregators)")
    if "num_frames" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("num_frames", num_frames)
    return build_attention(name, channels=channels, **kwargs)


def call_aggregator(agg: nn.Module, x: torch.Tensor, return_aux: bool):
    """Aggregators may or may not take ``return_aux``; always returns ``(feat, aux)``."""
    if "return_aux" in inspect.signature(agg.forward).parameters:
        out = agg(x, return_aux=return_aux)
        return out if return_aux else (out, {})
    return agg(x), {}
