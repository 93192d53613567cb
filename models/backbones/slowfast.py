"""SlowFast backbone (pytorchvideo ``create_slowfast``) with attention in both pathways.

Feichtenhofer, Fan, Malik, He, "SlowFast Networks for Video Recognition", ICCV 2019,
https://arxiv.org/abs/1812.03982

``slowfast_r50``: the official SLOWFAST_8x8_R50 setting (pytorchvideo's ``slowfast_r50``):
a 32-frame clip (stride 2) feeds the Fast pathway; the Slow pathway takes every ``alpha``-th
frame, ``alpha = 4`` (8 frames; pytorchvideo's ``PackPathway`` picks ``linspace`` indices instead,
which differ slightly). Fast channels are ``beta = 1/8`` of Slow's. After the stem and res2..res4
a time-strided convolution (kernel 7x1x1, stride ``alpha``, ``2 * beta * C`` channels, BN, ReLU)
fuses Fast into Slow by concatenation. The paper's text states a 5x1x1 fusion kernel (for its
``alpha = 8`` models); the released 8x8 config and pytorchvideo use 7.

Output: both res5 maps with the Fast time axis average-pooled to the Slow one (``T/alpha``),
concatenated on channels: ``(N, 2048 + 256, T/alpha, H/32, W/32)``, ``out_channels = 2304``.

Attention: stage ``s`` puts the block into both pathways (each with its own channels; temporal
blocks get each pathway's frames). ``stage_end`` modules run on each pathway's stage output
before the lateral fusion (keys ``stage_attn.stage<s>_slow`` / ``_fast``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorchvideo.models.resnet import ResStage
from pytorchvideo.models.slowfast import create_slowfast

from .video3d import ArchSpec, Video3DBackbone

ALPHA = 4
BETA_INV = 8
PATHWAYS = ("slow", "fast")


def _slowfast_r50():
    return create_slowfast(model_depth=50, slowfast_channel_reduction_ratio=(BETA_INV,),
                           slowfast_conv_channel_fusion_ratio=2, slowfast_fusion_conv_kernel_size=(7, 1, 1),
                           slowfast_fusion_conv_stride=(ALPHA, 1, 1), model_num_class=1)


class SlowFastBackbone(Video3DBackbone):
    """SlowFast without its head: ``(N,3,T,H,W) -> (N,2304,T/4,H/32,W/32)``.

    The input is the Fast clip (``num_frames`` = its length, 32 by default); a list
    ``[slow, fast]`` as pytorchvideo's ``PackPathway`` makes is accepted too. Other arguments as
    :class:`~models.backbones.video3d.Video3DBackbone`.
    """

    ARCHS = {"slowfast_r50": ArchSpec(_slowfast_r50, 32, 224, 2)}
    alpha = ALPHA

    def __init__(self, arch: str = "slowfast_r50", **kwargs):
        super().__init__(arch, **kwargs)

    def stage_paths(self, stage: int) -> list[tuple[str, ResStage]]:
        return [(f"stage{stage}_{p}", path)
                for p, path in zip(PATHWAYS, self.blocks[stage].multipathway_blocks)]

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        slow, fast = x if isinstance(x, (list, tuple)) else (x[:, :, ::self.alpha], x)
        self._check_frames(fast.shape[2])
        xs = self.blocks[0]([slow, fast])
        for s in range(1, 5):
            stage = self.blocks[s]
            xs = [self._stage_end(key, path(xi)) for (key, path), xi in zip(self.stage_paths(s), xs)]
            xs = stage.multipathway_fusion(xs)
        slow, fast = xs
        fast = F.adaptive_avg_pool3d(fast, slow.shape[2:])
        return torch.cat([slow, fast], dim=1)
