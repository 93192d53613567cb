"""Per-frame 2D ResNet (TSN style): torchvision ResNet applied to every frame of a clip."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet

from models.attention import takes_clips
from models.attention.layout import unit_indices

from .insertion import ResidualUnit, apply_block, build_block, stage_out_channels
from .plan import InsertionPlan, map_size, plan_insertion
from .weights import load_local_weights

_ARCHS = {"resnet18": resnet.resnet18, "resnet34": resnet.resnet34,
          "resnet50": resnet.resnet50, "resnet101": resnet.resnet101}


class ResNet2D(nn.Module):
    """A torchvision ResNet run per frame: ``(N,C,T,H,W) -> (N,C',T,h,w)``.

    Args:
        arch: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        num_frames: frames per clip (needed by temporal attention blocks).
        last_stride: stride of ``layer4`` (1 keeps 16x8 maps at 256x128, the re-ID custom).
        attention: registered block name, or ``None``. With no ``stages``, ``placement`` and
            ``every`` the block goes where its paper puts it (its ``paper_layout``, see
            :mod:`models.backbones.plan`): e.g. ``attention="gsop"`` builds GSoP-Net1.
        stages: torchvision stages (1..4 = ``layer1``..``layer4``) that receive the block
            (empty: the paper layout's).
        placement: see :mod:`models.backbones.insertion`; ``None``: the paper layout's.
        every: put the block into every ``every``-th residual unit of a stage (``None``: the
            paper layout's units, e.g. every other unit for non-local, the last for GSoP).
        attention_kwargs: the block's own keyword arguments (they win over per-stage ones).
        input_size: ``(H, W)`` of the frames, for blocks built for their stage's map size (RGA,
            GE-theta); default 224x224.
        pretrained: a local torchvision-format state dict (never downloaded).
    """

    def __init__(self, arch: str = "resnet50", num_frames: int = 8, last_stride: int = 2,
                 attention: str | None = None, stages: Sequence[int] = (), placement: str | None = None,
                 every: int | None = None, attention_kwargs: dict | None = None,
                 input_size: Sequence[int] = (224, 224), pretrained: str | None = None,
                 channels_last: bool = False):
        super().__init__()
        if arch not in _ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose from {sorted(_ARCHS)}")
        net = _ARCHS[arch](weights=None)
        if last_stride == 1:
            blk = net.layer4[0]
            (blk.conv2 if hasattr(blk, "conv3") else blk.conv1).stride = (1, 1)
            blk.downsample[0].stride = (1, 1)
        self.num_frames, self.last_stride = num_frames, last_stride
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = stage_out_channels(net.layer4)
        self.stage_attn = nn.ModuleDict()
        self.stem_attn = None
        self.attention_plan = None
        if attention:
            self.attention_plan = plan_insertion(attention, stages, placement, every, attention_kwargs)
            self._insert(self.attention_plan, tuple(input_size))
        if pretrained:
            self.load_report = load_local_weights(self, pretrained, key_map=_torchvision_key)
        self.channels_last = channels_last

    def stage_stride(self, stage: int) -> int:
        """Total stride of ``layer<stage>``'s output (4, 8, 16, 32; 16 for layer4 at last stride 1)."""
        return (4, 8, 16, 16 * self.last_stride)[stage - 1]

    def _insert(self, plan: InsertionPlan, input_size):
        for s in plan.stages:
            layer = getattr(self, f"layer{s}")
            kwargs = plan.stage_kwargs(s, map_size(input_size, self.stage_stride(s)))
            if plan.placement == "stage_end":
                self.stage_attn[f"layer{s}"] = build_block(plan.name, stage_out_channels(layer),
                                                           self.num_frames, kwargs)
                continue
            for i in unit_indices(plan.units, len(layer)):
                layer[i] = ResidualUnit(layer[i], plan.name, plan.placement, self.num_frames, kwargs,
                                        shortcut=plan.shortcut)
        if plan.stem:  # before the stem conv, on the 3-channel frames (GCT's official ResNet)
            self.stem_attn = build_block(plan.name, self.stem[0].in_channels, self.num_frames,
                                         plan.kwargs)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Time-folded input ``(N*T,C,H,W)`` -> ``(N*T,C',h,w)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.stem_attn is not None:
            x = apply_block(self.stem_attn, x, self.num_frames)
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            attn = self.stage_attn[f"layer{i}"] if f"layer{i}" in self.stage_attn else None
            if attn is not None:
                x = apply_block(attn, x, self.num_frames)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        if t != self.num_frames and any(True for _ in self._clip_blocks()):
            raise ValueError(f"clip has {t} frames but temporal blocks were built for {self.num_frames}")
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = self.forward_frames(frames)
        _, c2, h2, w2 = y.shape
        return y.reshape(n, t, c2, h2, w2).transpose(1, 2)

    def _clip_blocks(self):
        return (m for m in self.modules() if takes_clips(m))


def _torchvision_key(key: str) -> str:
    """torchvision ResNet key -> our key (the stem is grouped)."""
    for i, name in enumerate(("conv1", "bn1")):
        if key.startswith(name + "."):
            return f"stem.{i}." + key[len(name) + 1:]
    return key
