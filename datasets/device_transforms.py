"""Re-ID training augmentation for a batch of uint8 clips on their device, vectorised over clips.

The batched twin of ``build_reid_transform(train=True)`` for clips decoded on the GPU
(``datasets.device_decode``): per clip one horizontal flip draw, one zero-pad + random crop and one
random-erasing box (Zhong et al., AAAI 2020: area 2-33 % of the frame, log-uniform aspect ratio
0.3-3.3, up to 10 tries, filled with the rounded mean colour), shared by all its frames. The
parameters follow the distributions of torchvision's ``RandomHorizontalFlip``, ``Pad`` +
``RandomCrop`` and ``RandomErasing``, drawn from a ``torch.Generator`` on the CPU (seeded per
epoch by the caller, so a resumed run draws the same), for the whole batch at once.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["draw_reid_params", "apply_reid_augment", "ERASE_SCALE", "ERASE_RATIO", "ERASE_TRIES"]

ERASE_SCALE, ERASE_RATIO, ERASE_TRIES = (0.02, 0.33), (0.3, 3.3), 10


def draw_reid_params(n: int, height: int, width: int, generator: torch.Generator, flip_prob: float = 0.5,
                     padding: int = 10, erasing_prob: float = 0.5) -> dict[str, torch.Tensor]:
    """Parameters of ``n`` clips of ``height`` x ``width`` frames, as torchvision v2 draws them:
    int64 tensors of length ``n``: ``flip`` (0/1), ``top``/``left`` (crop offset in the padded
    frame), ``erase`` (0/1), ``i``/``j``/``h``/``w`` (the erased box)."""
    def rand(*shape):
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    flip = rand(n) < flip_prob
    top = (rand(n) * (2 * padding + 1)).long()                     # RandomCrop of the padded frame
    left = (rand(n) * (2 * padding + 1)).long()
    area = height * width
    erase_area = area * (ERASE_SCALE[0] + (ERASE_SCALE[1] - ERASE_SCALE[0]) * rand(n, ERASE_TRIES))
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(n, ERASE_TRIES))
    h = torch.sqrt(erase_area * aspect).round().long()
    w = torch.sqrt(erase_area / aspect).round().long()
    fits = (h < height) & (w < width)
    first = fits.long().argmax(1)                                    # the first try that fits
    h, w = h.gather(1, first[:, None])[:, 0], w.gather(1, first[:, None])[:, 0]
    erase = (rand(n) < erasing_prob) & fits.any(1)
    i = (rand(n) * (height - h + 1).clamp_min(1)).long()
    j = (rand(n) * (width - w + 1).clamp_min(1)).long()
    return dict(flip=flip.long(), top=top, left=left, erase=erase.long(), i=i, j=j, h=h, w=w)


def apply_reid_augment(clips: torch.Tensor, params: dict, padding: int, fill) -> torch.Tensor:
    """uint8 ``(N, T, C, H, W)`` -> augmented uint8 ``(N, C, T, H, W)`` (flip, pad + crop, erase).

    ``fill``: the erased pixels' colour, one value per channel (uint8 scale)."""
    n, t, c, height, width = clips.shape
    device = clips.device
    p = {k: v.to(device) for k, v in params.items()}
    flip = p["flip"].bool()[:, None, None, None, None]
    clips = torch.where(flip, clips.flip(-1), clips)
    if padding > 0:
        clips = F.pad(clips, (padding, padding, padding, padding))
    rows = p["top"][:, None] + torch.arange(height, device=device)              # (N, H) in the padded frame
    cols = p["left"][:, None] + torch.arange(width, device=device)              # (N, W)
    batch = torch.arange(n, device=device)[:, None, None]
    out = clips[batch, :, :, rows[:, :, None], cols[:, None, :]]                # (N, H, W, T, C)
    out = out.permute(0, 4, 3, 1, 2)                                           # (N, C, T, H, W)
    y = torch.arange(height, device=device)[None, :, None]
    x = torch.arange(width, device=device)[None, None, :]
    i, j, h, w = (p[k][:, None, None] for k in ("i", "j", "h", "w"))
    box = (y >= i) & (y < i + h) & (x >= j) & (x < j + w) & p["erase"].bool()[:, None, None]   # (N, H, W)
    colour = torch.as_tensor(fill, dtype=clips.dtype, device=device).view(1, c, 1, 1, 1)
    return torch.where(box[:, None, None], colour, out).contiguous()
