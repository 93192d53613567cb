"""Backbones by name: ``build_backbone("x3d_s", num_frames=13, attention="se", stages=(3, 4))``.

``resnet18/34/50/101`` are per-frame torchvision ResNets (:class:`ResNet2D`); the 3D names are
pytorchvideo networks (:class:`Video3DBackbone`, :class:`SlowFastBackbone`). Keyword arguments are
the class's own. Every backbone maps a clip ``(N,3,T,H,W)`` to a map ``(N,C',T',H',W')`` and has
``out_channels`` and ``num_frames``.
"""
from __future__ import annotations

import difflib

from torch import nn

from .resnet2d import _ARCHS as _RESNET2D_ARCHS
from .resnet2d import ResNet2D
from .slowfast import SlowFastBackbone
from .video3d import Video3DBackbone

_BACKBONES: dict[str, type] = {
    **{name: ResNet2D for name in _RESNET2D_ARCHS},
    **{name: Video3DBackbone for name in Video3DBackbone.ARCHS},
    **{name: SlowFastBackbone for name in SlowFastBackbone.ARCHS},
}


def list_backbones() -> list[str]:
    """Every backbone name, sorted."""
    return sorted(_BACKBONES)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Instantiate the backbone ``name`` with the class's keyword arguments."""
    key = name.lower()
    if key not in _BACKBONES:
        close = difflib.get_close_matches(key, _BACKBONES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"unknown backbone {name!r}.{hint} Known: {', '.join(list_backbones())}")
    return _BACKBONES[key](arch=key, **kwargs)
