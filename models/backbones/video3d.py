"""3D video backbones from ``pytorchvideo.models`` builders, each able to host attention.

``Video3DBackbone(arch)`` keeps pytorchvideo's stem and four residual stages (``blocks.0`` ..
``blocks.4``, so pytorchvideo state dicts load by name), drops the classification head and returns
the last feature map ``(N, C', T', H', W')``; ``C'`` is in ``out_channels``. Stages are numbered
1..4 like torchvision's ``layer1..layer4`` (pytorchvideo's ``res2..res5``, ``blocks.1..blocks.4``).

=================  ======================================================================
arch               paper settings (input ``num_frames x crop``, frame stride) and builder options
=================  ======================================================================
``slow_r50``       Slow-only R50, SlowFast paper (Feichtenhofer et al., ICCV 2019,
                   arXiv:1812.03982): 8x224^2, stride 8; stem 1x7x7; temporal 3x1x1 ``conv_a``
                   only in res4/res5 (``create_resnet(stem_conv_kernel_size=(1, 7, 7))``).
``x3d_xs/s/m``     X3D (Feichtenhofer, CVPR 2020, arXiv:2004.04730): width factor 2.0, depth
                   factor 2.2 (stage depths 3, 5, 11, 7; widths 24, 48, 96, 192), bottleneck
                   factor 2.25, SE (ratio 1/16) in every other block, swish; XS 4x160^2 stride
                   12, S 13x160^2 stride 6, M 16x224^2 stride 5 (test crops 182, 182, 256; the
                   three share one network and differ in input). The output includes X3D's
                   ``conv5`` (1x1x1, 192 -> 432, BN, ReLU), which pytorchvideo keeps in its head
                   as ``blocks.5.pool.pre_*``; its weights load into ``conv5.*``.
``r2plus1d_r50``   pytorchvideo's R(2+1)D-50 (``create_r2plus1d``): 16x224^2, stride 4. It
                   differs from Tran et al., CVPR 2018 (arXiv:1711.11248), whose R(2+1)D-18/34
                   use basic blocks, a (2+1)D stem, spatial-then-temporal factorisation and
                   ``M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i))`` middle channels:
                   here bottlenecks, a 1x7x7 stem, temporal-then-spatial, ``M_i = N_i``
                   (kept so pytorchvideo's released R(2+1)D-50 weights load).
``csn_r101``       ir-CSN-101 (Tran et al., ICCV 2019, arXiv:1904.02811): depthwise 3x3x3
                   ``conv_b``, stem 3x7x7 + max-pool, space-time stride 2 in res3..res5;
                   32x224^2, stride 2 (``create_csn(model_depth=101, stem_pool=MaxPool3d)``).
=================  ======================================================================

SlowFast lives in :mod:`models.backbones.slowfast`; :func:`models.backbones.factory.build_backbone`
builds any of them by name.

Attention insertion mirrors the per-frame ResNet (:mod:`models.backbones.insertion`): with no
``stages`` a block goes where its paper puts it (its ``paper_layout``, :mod:`models.backbones.plan`;
e.g. ``nonlocal_st``: 5 blocks, every other unit of res3 and res4, as in the non-local paper's
I3D/C2D ResNet-50), with per-stage arguments computed for each stage's map at ``input_size``
(GCT's extra stem and shortcut blocks exist in the 2D ResNet only). A 2D ``block`` runs on the
``(N*T, C, H, W)`` fold of the 3D map, a clip block (temporal or spatio-temporal) on
``(N, C, T, H, W)`` with ``num_frames`` = the number of frames at its place.
Placements in a pytorchvideo ``ResBlock`` (``branch2`` = ``conv_a/norm_a/act_a``,
``conv_b/norm_b/act_b``, ``conv_c/norm_c``):

* ``post``: after ``norm_c``, before the addition;
* ``pre_conv2``: after ``act_a``, before ``conv_b``;
* ``post_conv2``: after ``conv_b``, before ``norm_b``;
* ``pre_convs``: before each of ``conv_a``, ``conv_b``, ``conv_c``;
* ``replace_conv2``: replaces ``conv_b`` where it is a plain ``1 x k x k`` conv (temporal kernel
  and stride 1, no groups or dilation: every stage of Slow R50 and of both SlowFast pathways, not
  X3D/CSN (depthwise 3x3x3) or R(2+1)D); built with ``stride`` / ``out_channels`` as needed;
* ``after_block``: on the block output (after the addition and ReLU);
* ``stage_end``: once on the stage output.

Original parameter names are unchanged; attention parameters appear as new keys
(``...res_blocks.i.attn.<point>.*`` and ``stage_attn.stage<s>.*``). pytorchvideo zero-initialises
every ``norm_c`` weight (the official zero-init of the last BN: each branch starts at zero), so a
``post`` block has no effect until ``norm_c`` is trained or loaded.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from pytorchvideo.models.csn import create_csn
from pytorchvideo.models.r2plus1d import create_r2plus1d
from pytorchvideo.models.resnet import BottleneckBlock, ResBlock, ResStage, create_resnet
from pytorchvideo.models.x3d import create_x3d
from torch import nn

from models.attention import get_attention_class, takes_clips
from models.attention.layout import unit_indices

from .insertion import build_block
from .plan import InsertionPlan, map_size, plan_insertion
from .weights import load_local_weights

SUPPORTED_PLACEMENTS = ("post", "pre_conv2", "post_conv2", "pre_convs", "replace_conv2", "after_block", "stage_end")
# Where each per-block placement puts its module(s): the keys of ``AttentiveResBlock.attn``.
_POINTS = {"post": ("post",), "pre_conv2": ("conv_b",), "post_conv2": ("post_conv_b",), "pre_convs": ("conv_a", "conv_b", "conv_c"),
           "replace_conv2": ("replace_conv_b",), "after_block": ("after_block",)}
_DRY_RUN_SIZE = 32  # spatial size of the clip used to count frames at each attention point


@dataclass(frozen=True)
class ArchSpec:
    """A pytorchvideo network and its paper input: ``num_frames`` x ``crop_size``^2, frame stride."""
    build: Callable[[], nn.Module]
    num_frames: int
    crop_size: int
    sampling_rate: int


def _x3d(frames: int, crop: int) -> Callable[[], nn.Module]:
    return lambda: create_x3d(input_clip_length=frames, input_crop_size=crop, width_factor=2.0,
                              depth_factor=2.2, model_num_class=1)


ARCHS = {
    "slow_r50": ArchSpec(lambda: create_resnet(model_depth=50, stem_conv_kernel_size=(1, 7, 7),
                                               head=None), 8, 224, 8),
    "x3d_xs": ArchSpec(_x3d(4, 160), 4, 160, 12),
    "x3d_s": ArchSpec(_x3d(13, 160), 13, 160, 6),
    "x3d_m": ArchSpec(_x3d(16, 224), 16, 224, 5),
    "r2plus1d_r50": ArchSpec(lambda: create_r2plus1d(model_depth=50, model_num_class=1), 16, 224, 4),
    "csn_r101": ArchSpec(lambda: create_csn(model_depth=101, stem_pool=nn.MaxPool3d, model_num_class=1),
                         32, 224, 2),
}


def apply_block_3d(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module`` on ``(N,C,T,H,W)``: clip blocks directly, 2D blocks on the ``(N*T,C,H,W)`` fold."""
    if takes_clips(module):
        return module(x)
    n, c, t, h, w = x.shape
    y = module(x.transpose(1, 2).reshape(n * t, c, h, w))
    return y.reshape(n, t, *y.shape[1:]).transpose(1, 2)


def _maybe(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


class AttentiveResBlock(nn.Module):
    """A pytorchvideo ``ResBlock`` (bottleneck ``branch2``) with attention at ``placement``.

    ``branch1_conv``, ``branch1_norm``, ``branch2`` and ``activation`` keep their names, so
    pytorchvideo weights load unchanged; the attention modules live in ``attn`` (keyed by point).
    ``frames`` gives, per point, the number of frames a temporal block sees there.
    """

    def __init__(self, block: ResBlock, name: str, placement: str, kwargs: dict,
                 frames: dict[str, int] | None = None):
        super().__init__()
        branch = block.branch2
        if not isinstance(branch, BottleneckBlock):
            raise TypeError(f"cannot insert attention into a {type(branch).__name__} branch")
        self.branch1_conv, self.branch1_norm = block.branch1_conv, block.branch1_norm
        self.branch2, self.activation = branch, block.activation
        self.branch_fusion = block.branch_fusion  # a function (x + y), not a module
        frames = frames or {}
        out_ch = branch.conv_c.out_channels
        channels = {"conv_a": branch.conv_a.in_channels, "conv_b": branch.conv_a.out_channels,
                    "conv_c": branch.conv_c.in_channels, "post_conv_b": branch.conv_c.in_channels,
                    "post": out_ch, "after_block": out_ch}
        self.attn = nn.ModuleDict()
        if placement == "replace_conv2":
            conv = branch.conv_b
            if not (type(conv) is nn.Conv3d and conv.kernel_size[0] == 1 and conv.stride[0] == 1
                    and conv.groups == 1 and conv.dilation == (1, 1, 1) and conv.stride[1] == conv.stride[2]):
                raise ValueError(f"replace_conv2 needs conv_b to be a plain 1xkxk Conv3d; this block's "
                                 f"conv_b is {conv} (Slow R50 and SlowFast have one)")
            extra = {"stride": conv.stride[1]} if conv.stride[1] != 1 else {}
            if conv.out_channels != conv.in_channels:
                extra["out_channels"] = conv.out_channels
            self.attn["replace_conv_b"] = build_block(name, conv.in_channels, frames.get("conv_b"),
                                                      kwargs, **extra)
            del branch.conv_b
        else:
            for point in _POINTS[placement]:
                self.attn[point] = build_block(name, channels[point], frames.get(point), kwargs)

    def _attend(self, point: str, x: torch.Tensor) -> torch.Tensor:
        return apply_block_3d(self.attn[point], x) if point in self.attn else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.branch2
        shortcut = x if self.branch1_conv is None else _maybe(self.branch1_norm, self.branch1_conv(x))
        y = _maybe(b.act_a, _maybe(b.norm_a, b.conv_a(self._attend("conv_a", x))))
        y = self._attend("conv_b", y)
        y = self._attend("replace_conv_b", y) if "replace_conv_b" in self.attn else b.conv_b(y)
        y = _maybe(b.act_b, _maybe(b.norm_b, self._attend("post_conv_b", y)))
        y = _maybe(b.norm_c, b.conv_c(self._attend("conv_c", y)))
        y = self.branch_fusion(shortcut, self._attend("post", y))
        return self._attend("after_block", _maybe(self.activation, y))


def pytorchvideo_key(key: str) -> str:
    """pytorchvideo key -> ours: only X3D's ``conv5`` moves (``blocks.5.pool.pre_conv`` -> ``conv5.0``)."""
    return re.sub(r"^blocks\.5\.pool\.pre_(conv|norm)\.",
                  lambda m: "conv5.0." if m.group(1) == "conv" else "conv5.1.", key)


class Video3DBackbone(nn.Module):
    """A pytorchvideo 3D network without its head: ``(N,3,T,H,W) -> (N,C',T',H',W')``.

    Args:
        arch: see the module docstring (``slow_r50``, ``x3d_xs``, ``x3d_s``, ``x3d_m``,
            ``r2plus1d_r50``, ``csn_r101``).
        num_frames: frames per clip; ``None`` takes the paper's (``ARCHS[arch].num_frames``). Only
            temporal attention blocks depend on it (they are built for the frames at their place).
        attention: registered block name, or ``None`` (alone: the block's paper layout).
        stages: stages 1..4 that receive the block (empty: the paper layout's).
        placement: one of ``SUPPORTED_PLACEMENTS``; ``None``: the paper layout's.
        every: put the block into every ``every``-th residual block of a stage (``None``: the
            paper layout's units).
        attention_kwargs: the block's own keyword arguments (they win over per-stage ones).
        input_size: ``(H, W)`` of the clip for size-dependent blocks; ``None``: the arch's crop.
        pretrained: a local pytorchvideo-format state dict (never downloaded).
    """

    ARCHS = ARCHS

    def __init__(self, arch: str = "slow_r50", num_frames: int | None = None, attention: str | None = None,
                 stages: Sequence[int] = (), placement: str | None = None, every: int | None = None,
                 attention_kwargs: dict | None = None, input_size: Sequence[int] | None = None,
                 pretrained: str | None = None):
        super().__init__()
        if arch not in self.ARCHS:
            raise ValueError(f"unknown arch {arch!r} for {type(self).__name__}; choose from "
                             f"{sorted(self.ARCHS)} (SlowFast: models.backbones.slowfast.SlowFastBackbone)")
        spec = self.ARCHS[arch]
        self.arch = arch
        self.num_frames = num_frames or spec.num_frames
        self.crop_size, self.sampling_rate = spec.crop_size, spec.sampling_rate
        net = spec.build()
        self.blocks = nn.ModuleList(list(net.blocks)[:5])  # stem + res2..res5
        head = net.blocks[5] if len(net.blocks) > 5 else None
        pool = getattr(head, "pool", None)
        self.conv5 = (nn.Sequential(pool.pre_conv, pool.pre_norm, pool.pre_act)
                      if hasattr(pool, "pre_conv") else None)  # X3D only
        self.out_channels = (self.conv5[0].out_channels if self.conv5 is not None else
                             sum(path.res_blocks[-1].branch2.conv_c.out_channels
                                 for _, path in self.stage_paths(4)))
        self.stage_attn = nn.ModuleDict()
        self.temporal_attention = False
        self.attention_plan = None
        if attention:
            self.attention_plan = plan_insertion(attention, stages, placement, every, attention_kwargs)
            self._insert(self.attention_plan, tuple(input_size or (spec.crop_size, spec.crop_size)))
        if pretrained:
            self.load_report = load_local_weights(self, pretrained, key_map=pytorchvideo_key)

    def stage_paths(self, stage: int) -> list[tuple[str, ResStage]]:
        """``(key, ResStage)`` of each pathway of ``stage`` (one pathway here)."""
        return [(f"stage{stage}", self.blocks[stage])]

    def _insert(self, plan: InsertionPlan, input_size):
        name, placement = plan.name, plan.placement
        if placement not in SUPPORTED_PLACEMENTS:
            raise ValueError(f"placement {placement!r} is not supported by 3D backbones; "
                             f"supported: {', '.join(SUPPORTED_PLACEMENTS)}")
        self.temporal_attention = takes_clips(get_attention_class(name))
        need_sizes = plan.layout.per_stage is not None
        frames, strides = (self._probe() if self.temporal_attention or need_sizes else ({}, {}))
        for s in plan.stages:
            size = map_size(input_size, strides[s]) if need_sizes else None
            kwargs = plan.stage_kwargs(s, size)
            for key, path in self.stage_paths(s):
                last_conv_c = path.res_blocks[-1].branch2.conv_c
                if placement == "stage_end":
                    self.stage_attn[key] = build_block(name, last_conv_c.out_channels,
                                                       frames.get(last_conv_c), kwargs)
                    continue
                for i in unit_indices(plan.units, len(path.res_blocks)):
                    b = path.res_blocks[i].branch2
                    at = {"conv_a": frames.get(b.conv_a), "conv_b": frames.get(b.conv_b),
                          "conv_c": frames.get(b.conv_c), "post_conv_b": frames.get(b.conv_c),
                          "post": frames.get(b.conv_c), "after_block": frames.get(b.conv_c)}
                    path.res_blocks[i] = AttentiveResBlock(path.res_blocks[i], name, placement, kwargs, at)

    @torch.no_grad()
    def _probe(self) -> tuple[dict[nn.Module, int], dict[int, int]]:
        """From a dry run on a tiny clip: the frames entering every ``conv_a``/``conv_b``/``conv_c``
        and each stage's total spatial stride."""
        frames, strides, hooks = {}, {}, []
        for s in range(1, 5):
            _, first = self.stage_paths(s)[0]
            hooks.append(first.register_forward_hook(
                lambda m, args, out, s=s: strides.__setitem__(s, _DRY_RUN_SIZE // out.shape[-1])))
            for _, path in self.stage_paths(s):
                for block in path.res_blocks:
                    for conv in (block.branch2.conv_a, block.branch2.conv_b, block.branch2.conv_c):
                        hooks.append(conv.register_forward_pre_hook(
                            lambda m, args: frames.__setitem__(m, args[0].shape[2])))
        was_training = self.training
        self.eval()
        try:
            self(torch.zeros(1, 3, self.num_frames, _DRY_RUN_SIZE, _DRY_RUN_SIZE))
        finally:
            self.train(was_training)
            for h in hooks:
                h.remove()
        return frames, strides

    def _stage_end(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return apply_block_3d(self.stage_attn[key], x) if key in self.stage_attn else x

    def _check_frames(self, frames: int):
        if self.temporal_attention and frames != self.num_frames:
            raise ValueError(f"clip has {frames} frames but temporal blocks were built for {self.num_frames}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected a clip batch (N,C,T,H,W), got shape {tuple(x.shape)}")
        self._check_frames(x.shape[2])
        x = self.blocks[0](x)
        for s in range(1, 5):
            x = self._stage_end(f"stage{s}", self.blocks[s](x))
        return x if self.conv5 is None else self.conv5(x)
