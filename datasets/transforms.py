"""Re-ID clip transforms with ``torchvision.transforms.v2``.

A clip is a uint8 tensor ``(T,C,H,W)``; v2 treats the leading dimension as a batch and draws one
set of random parameters per call, so every frame of a tracklet gets the same flip, crop and
erased box. The output is float ``(C,T,H,W)``, normalised, as the models take it.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToClip(torch.nn.Module):
    """``(T,C,H,W)`` -> ``(C,T,H,W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).contiguous()


def build_reid_transform(height: int, width: int, train: bool, flip_prob: float = 0.5, padding: int = 10,
                         erasing_prob: float = 0.5, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """Resize, [random flip, pad + random crop], to float, normalise, [random erasing], to (C,T,H,W)."""
    ops = [v2.Resize((height, width), antialias=True)]
    if train:
        if flip_prob > 0:
            ops.append(v2.RandomHorizontalFlip(flip_prob))
        if padding > 0:
            ops += [v2.Pad(padding), v2.RandomCrop((height, width))]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if train and erasing_prob > 0:
        ops.append(v2.RandomErasing(erasing_prob, value=0))
    ops.append(ToClip())
    return v2.Compose(ops)
