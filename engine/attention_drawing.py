"""Attention pictures: the clip's frames, then one row of heatmaps per attention site.

Maps from ``engine/attention_maps.py``; a small numpy jet colormap blended onto the frames with
PIL (no matplotlib). Each row is stretched to its own range, which is printed beside it.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .attention_maps import SiteMaps, extract_attention_maps

log = logging.getLogger(__name__)

__all__ = ["jet", "draw_attention_strip", "attention_strip"]


LABEL_WIDTH = 190
GAP = 3
MIN_TILE_HEIGHT = 96
FOOTER = 22
ALPHA = 0.55


def jet(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> ``(..., 3)`` uint8, the piecewise-linear jet colormap (blue -> red)."""
    four = 4 * np.clip(v, 0, 1)[..., None]
    centre = np.array([3.0, 2.0, 1.0])                  # red, green, blue peaks
    return (np.clip(1.5 - np.abs(four - centre), 0, 1) * 255).round().astype(np.uint8)


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def tile_size(height: int, width: int) -> tuple[int, int]:
    """Displayed frame size: upscaled by an integer factor to at least ``MIN_TILE_HEIGHT`` rows."""
    factor = max(1, -(-MIN_TILE_HEIGHT // height))
    return height * factor, width * factor


def _stretch(maps: torch.Tensor, size) -> np.ndarray:
    """``(T,h,w)`` -> ``(T,H,W)`` in [0, 1]: bilinear upsampling, stretched to the row's range."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    low, high = up.min(), up.max()
    return (up - low) / (high - low) if high - low > 1e-12 else np.zeros_like(up)


def _weight_bar(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, height: int, weight: float, top: float,
                font) -> None:
    bar = max(1, round((width - 4) * weight / max(top, 1e-12)))
    draw.rectangle([x + 2, y + height - 9, x + 2 + bar, y + height - 3], fill="white", outline="black")
    draw.text((x + 3, y + height - 23), f"w={weight:.2f}", fill="white", font=font, stroke_width=1,
              stroke_fill="black")


def draw_attention_strip(frames: torch.Tensor, sites: dict[str, SiteMaps], frame_labels=None) -> Image.Image:
    """``frames`` uint8 ``(T,C,H,W)`` and per-site maps of one clip -> the picture: the frames, then
    one row per site with its heatmaps (jet, blended onto the frames) and a label."""
    t = frames.shape[0]
    th, tw = tile_size(*frames.shape[2:])
    base = [Image.fromarray(f.permute(1, 2, 0).cpu().numpy()).resize((tw, th), Image.BILINEAR) for f in frames]
    rows = 1 + len(sites)
    canvas = Image.new("RGB", (LABEL_WIDTH + t * (tw + GAP), rows * (th + GAP) + FOOTER), "white")
    draw, font, small = ImageDraw.Draw(canvas), _font(12), _font(10)
    draw.text((4, 4), "frames", fill="black", font=font)
    for i, img in enumerate(base):
        x = LABEL_WIDTH + i * (tw + GAP)
        canvas.paste(img, (x, 0))
        if frame_labels is not None:
            draw.text((x + 3, 2), str(frame_labels[i]), fill="white", font=small, stroke_width=1, stroke_fill="black")
    for r, site in enumerate(sites.values(), start=1):
        y = r * (th + GAP)
        lines = [site.name, f"{site.module}: {site.what}"]
        if site.maps is not None:
            lines.append(f"range {site.low:.3g} .. {site.high:.3g}")
        draw.multiline_text((4, y + 4), "\n".join(_wrap(line, 30) for line in lines), fill="black", font=font)
        heat = None if site.maps is None else _stretch(site.maps, (th, tw))
        for i, img in enumerate(base):
            x = LABEL_WIDTH + i * (tw + GAP)
            if heat is None:
                tile = Image.blend(img, Image.new("RGB", img.size, "gray"), 0.5)
            else:
                k = min(i * heat.shape[0] // t, heat.shape[0] - 1)   # map frames of a strided 3-D net
                tile = Image.blend(img, Image.fromarray(jet(heat[k])), ALPHA)
            canvas.paste(tile, (x, y))
            if site.frame_weights is not None:
                w = site.frame_weights
                k = min(i * len(w) // t, len(w) - 1)
                _weight_bar(draw, x, y, tw, th, float(w[k]), float(w.max()), small)
    _colour_key(canvas, draw, rows * (th + GAP) + 4, small)
    return canvas


def _wrap(text: str, width: int) -> str:
    return "\n".join(text[i:i + width] for i in range(0, len(text), width))


def _colour_key(canvas: Image.Image, draw: ImageDraw.ImageDraw, y: int, font) -> None:
    bar = jet(np.linspace(0, 1, 120))[None].repeat(10, 0)
    canvas.paste(Image.fromarray(bar), (4, y + 2))
    draw.text((130, y), "low -> high in each row's own range; w = frame weight",
              fill="black", font=font)


def attention_strip(model: nn.Module, clip_uint8: torch.Tensor, model_clip: torch.Tensor,
                    frame_labels=None) -> Image.Image:
    """One clip's attention picture: ``clip_uint8`` ``(T,C,H,W)`` as shown, ``model_clip``
    ``(C,T,H,W)`` (or ``(1,C,T,H,W)``) as the model takes it (uint8, or float already normalised). Runs the model in eval mode and puts
    its training mode back, so a trainer can log it (``SummaryWriter.add_image``, HWC)."""
    clip = model_clip[0] if model_clip.dim() == 5 else model_clip
    was_training = model.training
    model.eval()
    try:
        sites = extract_attention_maps(model, clip)
    finally:
        model.train(was_training)
    if not sites:
        log.warning("the model has no attention modules: the picture shows the frames only")
    return draw_attention_strip(clip_uint8, sites, frame_labels)
