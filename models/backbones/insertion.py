"""Putting attention blocks into residual networks, at the place each paper puts them.

Placements (a block's class attribute ``placement`` is its paper's default):

=================  ==========================================================================
``post``           in the residual branch after its last BN, before the addition (SE, CBAM, ECA...)
``pre_conv2``      after the first 1x1 conv + BN + ReLU, before the 3x3 conv (TAM in TANet)
``post_conv2``     right after the 3x3 conv, before its BN (SimAM's official ResNets)
``replace_conv2``  replaces the 3x3 conv; built with ``stride`` when the conv strides (DCN, SASA,
                   SAN, SCNet's self-calibrated conv)
``pre_convs``      one instance before every conv of the branch (GCT)
``after_block``    on the block output, after the addition and ReLU (Non-local, MHSA)
``stage_end``      once, on the output of the stage's last block (BAM, RGA, CCNet, EMANet)
=================  ==========================================================================

Which stages and units get a block: :mod:`models.backbones.plan` (the block's paper layout
unless overridden). Clip blocks (temporal and spatio-temporal blocks such as TAM and
``nonlocal_st``) see ``(N,C,T,H,W)``: the per-frame backbone folds time into the batch, so
:func:`apply_block` unfolds around them.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from models.attention import build_attention, get_attention_class, takes_clips

PLACEMENTS = ("post", "pre_conv2", "post_conv2", "replace_conv2", "pre_convs", "after_block", "stage_end")


def apply_block(module: nn.Module, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Run ``module`` on a time-folded map ``(N*T,C,H,W)``; clip blocks see ``(N,C,T,H,W)``."""
    if not takes_clips(module):
        return module(x)
    nt, c, h, w = x.shape
    n = nt // num_frames
    y = module(x.view(n, num_frames, c, h, w).transpose(1, 2))
    return y.transpose(1, 2).reshape(nt, c, h, w)


def build_block(name: str, channels: int, num_frames: int, kwargs: dict, **extra) -> nn.Module:
    cls = get_attention_class(name)
    if cls.kind != "block":
        raise ValueError(f"attention {name!r} is a {cls.kind}, only blocks go into backbone stages")
    kw = dict(kwargs)
    if takes_clips(cls):
        kw.setdefault("num_frames", num_frames)
    kw.update(extra)
    return build_attention(name, channels=channels, **kw)


class ResidualUnit(nn.Module):
    """A torchvision ``BasicBlock``/``Bottleneck`` with an attention block at ``placement``.

    The original layers keep their names (``conv1``, ``bn1``, ..., ``downsample``), so torchvision
    ResNet weights load unchanged; the attention parameters live under ``attn``.
    ``shortcut=True`` (``pre_convs`` only) adds one more block before the projection-shortcut
    conv (``attn.downsample``), as GCT's official ResNet does.
    """

    def __init__(self, block: nn.Module, name: str, placement: str, num_frames: int, kwargs: dict,
                 shortcut: bool = False):
        super().__init__()
        if placement not in PLACEMENTS or placement == "stage_end":
            raise ValueError(f"placement {placement!r} is not a per-block placement")
        self.bottleneck = isinstance(block, Bottleneck)
        if not self.bottleneck and not isinstance(block, BasicBlock):
            raise TypeError(f"cannot insert attention into {type(block).__name__}")
        self.placement = placement
        self.num_frames = num_frames
        self.downsample = block.downsample
        for child_name, child in block.named_children():
            setattr(self, child_name, child)
        width = block.conv1.out_channels
        out_ch = (block.bn3 if self.bottleneck else block.bn2).num_features
        if placement == "post":
            self.attn = build_block(name, out_ch, num_frames, kwargs)
        elif placement == "after_block":
            self.attn = build_block(name, out_ch, num_frames, kwargs)
        elif placement == "pre_conv2":
            self.attn = build_block(name, width, num_frames, kwargs)
        elif placement == "post_conv2":
            self.attn = build_block(name, block.conv2.out_channels, num_frames, kwargs)
        elif placement == "replace_conv2":
            stride = block.conv2.stride[0]
            extra = {"stride": stride} if stride != 1 else {}
            if block.conv2.out_channels != width:
                extra["out_channels"] = block.conv2.out_channels
            self.attn = build_block(name, width, num_frames, kwargs, **extra)
            del self.conv2
        else:  # pre_convs
            convs = ["conv1", "conv2", "conv3"] if self.bottleneck else ["conv1", "conv2"]
            self.attn = nn.ModuleDict({c: build_block(name, getattr(block, c).in_channels,
                                                      num_frames, kwargs) for c in convs})
            if shortcut and block.downsample is not None:
                self.attn["downsample"] = build_block(name, block.downsample[0].in_channels,
                                                      num_frames, kwargs)

    def _attn(self, x: torch.Tensor, where: str) -> torch.Tensor:
        if self.placement == "pre_convs":
            return apply_block(self.attn[where], x, self.num_frames) if where in self.attn else x
        if self.placement == where:
            return apply_block(self.attn, x, self.num_frames)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(self._attn(x, "downsample"))
        out = self.relu(self.bn1(self.conv1(self._attn(x, "conv1"))))
        out = self._attn(out, "pre_conv2")
        if self.placement == "replace_conv2":
            out = apply_block(self.attn, out, self.num_frames)
        else:
            out = self._attn(self.conv2(self._attn(out, "conv2")), "post_conv2")
        out = self.bn2(out)
        if self.bottleneck:
            out = self.bn3(self.conv3(self._attn(self.relu(out), "conv3")))
        out = self._attn(out, "post")
        out = self.relu(out + identity)
        return self._attn(out, "after_block")


def stage_out_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
