"""Re-ID clip transforms with ``torchvision.transforms.v2``, on uint8 throughout.

A clip is a uint8 tensor ``(T,C,H,W)``; v2 treats the leading dimension as a batch and draws one
set of random parameters per call, so every frame of a tracklet gets the same flip, crop and
erased box. The output is uint8 ``(C,T,H,W)`` (a view of the frames): the model normalises it on its device
(``models.input_norm.InputNormalize``).

Random erasing (Zhong et al., AAAI 2020) fills its box with the mean colour, ``round(255 * mean)``
in uint8: the boxes are drawn exactly as before (same random stream), and the fill lands within
``0.5 / (255 std)`` (< 0.009) of the 0 that erasing after normalisation wrote.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from models.input_norm import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["build_reid_transform", "ToClip", "mean_colour", "IMAGENET_MEAN", "IMAGENET_STD"]


class ToClip(torch.nn.Module):
    """``(T,C,H,W)`` -> ``(C,T,H,W)``, a transposed view of contiguous frames (the DataLoader's
    collate stacks it plane by plane)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.as_subclass(torch.Tensor).contiguous().transpose(0, 1)


def mean_colour(mean) -> list[float]:
    """The uint8 colour closest to ``mean`` (fractions in [0, 1]): what erased pixels are set to."""
    return [float(round(255 * m)) for m in mean]


def build_reid_transform(height: int, width: int, train: bool, flip_prob: float = 0.5, padding: int = 10,
                         erasing_prob: float = 0.5, mean=IMAGENET_MEAN) -> v2.Compose:
    """Resize, [random flip, pad + random crop, random erasing], to uint8 (C,T,H,W)."""
    ops = [v2.Resize((height, width), antialias=True)]
    if train:
        if flip_prob > 0:
            ops.append(v2.RandomHorizontalFlip(flip_prob))
        if padding > 0:
            ops += [v2.Pad(padding), v2.RandomCrop((height, width))]
        if erasing_prob > 0:
            ops.append(v2.RandomErasing(erasing_prob, value=mean_colour(mean)))
    ops.append(ToClip())
    return v2.Compose(ops)
