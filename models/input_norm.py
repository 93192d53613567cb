"""The model's first step: uint8 clips -> normalised float, on the model's device.

Datasets hand out uint8 clips ``(N, C, T, H, W)`` (4x fewer bytes through DataLoader workers
than float32, no float work in workers); the float conversion and ``(x / 255 - mean) / std``
happen here, in one ``addcmul`` kernel: ``shift + x * scale`` with ``scale = 1 / (255 std)`` and
``shift = -mean / std`` (equal to ``ToDtype(float32, scale=True)`` + ``Normalize(mean, std)`` up
to float rounding, ~1e-6 relative).

Float input is taken as already normalised and passed through unchanged (tensors built by
hand in tests, benchmarks and exported graphs); any other dtype is an error. The buffers are
not saved in checkpoints: mean and std come from the config (``DATA.MEAN`` / ``DATA.STD``).
"""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["InputNormalize", "IMAGENET_MEAN", "IMAGENET_STD"]


class InputNormalize(nn.Module):
    """uint8 ``(N, C, T, H, W)`` (or ``(C, T, H, W)``) -> float32, normalised per channel."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != std.shape or not bool((std > 0).all()):
            raise ValueError(f"mean and std need one value per channel and std > 0, got {mean.tolist()}, "
                             f"{std.tolist()}")
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(-1, 1, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(-1, 1, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.is_floating_point():
            return clips
        if clips.dtype != torch.uint8:
            raise TypeError(f"clips must be uint8 (normalised here) or float (already normalised), got {clips.dtype}")
        if clips.ndim < 4 or clips.shape[-4] != self.scale.shape[0]:
            raise ValueError(f"expected uint8 clips (N, C, T, H, W) with C = {self.scale.shape[0]}, "
                             f"got {tuple(clips.shape)}")
        return torch.addcmul(self.shift, clips, self.scale)

    def extra_repr(self) -> str:
        std = 1.0 / (255.0 * self.scale.flatten())
        mean = -self.shift.flatten() * std
        return f"mean={[round(v, 4) for v in mean.tolist()]}, std={[round(v, 4) for v in std.tolist()]}"
