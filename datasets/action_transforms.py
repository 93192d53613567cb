"""Action-recognition clip transforms with ``torchvision.transforms.v2``.

Input: uint8 frames ``(..., T, C, H, W)`` (one clip, or ``V`` test views stacked in front),
wrapped as a ``tv_tensors.Video`` so that v2 draws ONE set of random parameters per call: every
frame of a clip gets the same crop, scale and flip. Output: uint8 ``(..., C, T, H, W)``, as the
models take it (they convert and normalise on their device); three-crop adds a crop axis:
``(..., 3, C, T, H, W)``. Everything here works on uint8.

- train, ``"multiscale"`` (TSN, Wang et al. ECCV 2016): resize the short side, crop a width and a
  height each chosen from ``scales`` x short side (at most one scale step apart) at one of 13 fixed
  positions, resize to ``crop_size``; then horizontal flip.
- train, ``"random_resized"``: Inception-style random resized crop (area 8-100 %, aspect 3/4-4/3)
  + horizontal flip.
- test: resize the short side to ``short_side``, centre crop ``crop_size``; ``num_crops=3``:
  short side to ``crop_size``, then left/centre/right (top/centre/bottom for portrait) crops
  covering the long side (the SlowFast / non-local three-crop test).
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["build_action_transform", "MultiScaleCrop", "ThreeCrop", "ToModelLayout"]

TSN_SCALES = (1.0, 0.875, 0.75, 0.66)


class AsVideo(torch.nn.Module):
    """Wrap a ``(..., T, C, H, W)`` tensor as ``tv_tensors.Video`` (one parameter draw per clip)."""

    def forward(self, frames: torch.Tensor) -> tv_tensors.Video:
        if frames.ndim < 4 or frames.shape[-3] not in (1, 3):
            raise ValueError(f"expected frames (..., T, C, H, W) with C in (1, 3), got {tuple(frames.shape)}")
        return tv_tensors.Video(frames)


class MultiScaleCrop(torch.nn.Module):
    """TSN's multi-scale crop (``GroupMultiScaleCrop`` with ``more_fix_crop``), one draw per clip.

    Crop height and width are ``scale x min(H, W)`` for two of ``scales`` at most ``max_distort``
    steps apart; the crop sits at one of 13 positions (4 corners, centre, 4 edge middles, 4 quarter
    points) and is resized to ``size``.
    """

    def __init__(self, size, scales=TSN_SCALES, max_distort: int = 1):
        super().__init__()
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scales, self.max_distort = tuple(scales), max_distort
        self.pairs = [(i, j) for i in range(len(scales)) for j in range(len(scales)) if abs(i - j) <= max_distort]

    @staticmethod
    def _positions(height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
        step_h, step_w = (height - crop_h) // 4, (width - crop_w) // 4
        quarters = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4),
                    (1, 1), (1, 3), (3, 1), (3, 3)]
        return [(qh * step_h, qw * step_w) for qh, qw in quarters]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        height, width = video.shape[-2:]
        base = min(height, width)
        i, j = self.pairs[int(torch.randint(len(self.pairs), ()))]
        crop_h, crop_w = max(1, int(base * self.scales[i])), max(1, int(base * self.scales[j]))
        positions = self._positions(height, width, crop_h, crop_w)
        top, left = positions[int(torch.randint(len(positions), ()))]
        return F.resized_crop(video, top, left, crop_h, crop_w, list(self.size), antialias=True)


class ThreeCrop(torch.nn.Module):
    """Three ``size`` x ``size`` crops along the long side: ``(..., C, H, W)`` -> ``(..., 3, C, s, s)``."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        height, width = video.shape[-2:]
        s = self.size
        if min(height, width) < s:
            raise ValueError(f"three-crop of {s} needs frames at least {s} on the short side, got {height}x{width}")
        if width >= height:
            offsets = [(height - s) // 2, 0], [(height - s) // 2, (width - s) // 2], [(height - s) // 2, width - s]
        else:
            offsets = [0, (width - s) // 2], [(height - s) // 2, (width - s) // 2], [height - s, (width - s) // 2]
        crops = torch.stack([F.crop(video, top, left, s, s) for top, left in offsets], dim=-5)
        return tv_tensors.wrap(crops, like=video) if isinstance(video, tv_tensors.TVTensor) else crops


class ToModelLayout(torch.nn.Module):
    """uint8 ``(..., T, C, H, W)`` -> uint8 ``(..., C, T, H, W)``, the models' layout (they normalise
    on their device: ``models.input_norm.InputNormalize``).

    The frames arrive in the decoder's channels-last order (where the resize is fastest); one copy
    makes each ``(H, W)`` plane contiguous and the result is a transposed view of it, which the
    DataLoader's collate stacks plane by plane (stacking the channels-last view directly, a
    3-byte-stride gather, cost twice that copy)."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return video.as_subclass(torch.Tensor).contiguous().transpose(-4, -3)


def build_action_transform(train: bool, crop_size: int = 224, short_side: int = 256, mode: str = "multiscale",
                           scales=TSN_SCALES, flip_prob: float = 0.5, num_crops: int = 1) -> v2.Compose:
    """The training or test pipeline described in the module docstring.

    ``mode``: ``"multiscale"`` (TSN) or ``"random_resized"`` (training only).
    ``num_crops``: 1 (centre crop) or 3 (three-crop), test only.
    """
    ops: list[torch.nn.Module] = [AsVideo()]
    if train:
        if mode == "multiscale":
            ops += [v2.Resize(short_side, antialias=True), MultiScaleCrop(crop_size, scales)]
        elif mode == "random_resized":
            ops.append(v2.RandomResizedCrop(crop_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True))
        else:
            raise ValueError(f"train mode must be 'multiscale' or 'random_resized', got {mode!r}")
        if flip_prob > 0:
            ops.append(v2.RandomHorizontalFlip(flip_prob))
    elif num_crops == 1:
        ops += [v2.Resize(short_side, antialias=True), v2.CenterCrop(crop_size)]
    elif num_crops == 3:
        ops += [v2.Resize(crop_size, antialias=True), ThreeCrop(crop_size)]
    else:
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    ops.append(ToModelLayout())
    return v2.Compose(ops)
