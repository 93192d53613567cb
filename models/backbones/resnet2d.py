"""Per-frame 2D ResNet (TSN style): torchvision ResNet applied to every frame of a clip."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet

from .insertion import ResidualUnit, apply_block, build_block, default_placement, stage_out_channels
from .weights import load_local_weights

_ARCHS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34,
          "resnet50": resnet.resnet50, "resnet101": resnet.resnet101}


class ResNet2D(nn.Module):
    """A torchvision ResNet run per frame: ``(N,C,T,H,W) -> (N,C',T,h,w)``.

    Args:
        arch: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        num_frames: frames per clip (needed by temporal attention blocks).
        last_stride: stride of ``layer4`` (1 keeps 16x8 maps at 256x128, the re-ID custom).
        attention: registered block name, or ``None``.
        stages: torchvision stages (1..4 = ``layer1``..``layer4``) that receive the block.
        placement: see :mod:`models.backbones.insertion`; ``None`` uses the module's paper default.
        every: put the block into every ``every``-th residual unit of a stage (Non-local uses 2).
        attention_kwargs: the block's own keyword arguments.
        pretrained: a local torchvision-format state dict (never downloaded).
    """

    def __init__(self, arch: str = "resnet50", num_frames: int = 8, last_stride: int = 2,
                 attention: str | None = None, stages: Sequence[int] = (), placement: str | None = None,
                 every: int = 1, attention_kwargs: dict | None = None, pretrained: str | None = None,
                 channels_last: bool = False):
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose from {sorted(_ARCHS)}")
        net = _ARCHS[arch](weights=None)
        if last_stride == 1:
            blk = net.layer4[0]
            (blk.conv2 if hasattr(blk, "conv3") else blk.conv1).stride = (1, 1)
            blk.downsample[0].stride = (1, 1)
        self.num_frames = num_frames
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = stage_out_channels(net.layer4)
        self.stage_attn = nn.ModuleDict()
        if attention:
            self._insert(attention, stages, placement or default_placement(attention), every,
                         attention_kwargs or {})
        if pretrained:
            self.load_report = load_local_weights(self, pretrained, key_map=_torchvision_key)
        self.channels_last = channels_last

    def _insert(self, name, stages, placement, every, kwargs):
        for s in stages:
            if s not in (1, 2, 3, 4):
                raise ValueError(f"stages are 1..4 (torchvision layer1..layer4), got {s}")
            layer = getattr(self, f"layer{s}")
            if placement == "stage_end":
                self.stage_attn[f"layer{s}"] = build_block(name, stage_out_channels(layer),
                                                           self.num_frames, kwargs)
                continue
            for i in range(len(layer)):
                if (i + 1) % every == 0 or every == 1:
                    layer[i] = ResidualUnit(layer[i], name, placement, self.num_frames, kwargs)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Time-folded input ``(N*T,C,H,W)`` -> ``(N*T,C',h,w)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            attn = self.stage_attn[f"layer{i}"] if f"layer{i}" in self.stage_attn else None
            if attn is not None:
                x = apply_block(attn, x, self.num_frames)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        if t != self.num_frames and any(True for _ in self._temporal_blocks()):
            raise ValueError(f"clip has {t} frames but temporal blocks were built for {self.num_frames}")
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = self.forward_frames(frames)
        _, c2, h2, w2 = y.shape
        return y.reshape(n, t, c2, h2, w2).transpose(1, 2)

    def _temporal_blocks(self):
        return (m for m in self.modules() if getattr(m, "family", None) == "temporal")


def _torchvision_key(key: str) -> str:
    """torchvision ResNet key -> our key (the stem is grouped)."""
    for i, name in enumerate(("conv1", "bn1")):
        if key.startswith(name + "."):
            return f"stem.{i}." + key[len(name) + 1:]
    return key
