"""``tools/visualize.py attention``: one clip of a video file or frame folder, the trained model's
attention heatmaps as a PNG strip and a TensorBoard image."""
from __future__ import annotations

import logging
import os
import re

import numpy as np
import torch

from .attention_drawing import attention_strip
from .errors import InputError

log = logging.getLogger(__name__)

__all__ = ["tracklet_frames", "clip_frame_indices", "load_clip", "visualize_attention"]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MARS_NAME = re.compile(r"^(.+C\d+T\d+)F\d+")


def tracklet_frames(folder: str) -> list[str]:
    """Image files of a folder, sorted; a MARS identity folder holds several tracklets: the first is used."""
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise InputError(f"no frame images ({', '.join(IMAGE_EXTENSIONS)}) in {folder!r}")
    keys = [m.group(1) if (m := MARS_NAME.match(n)) else None for n in names]
    if None not in keys and len(set(keys)) > 1:
        log.warning("%s holds %d MARS tracklets; showing %s", folder, len(set(keys)), keys[0])
        names = [n for n, k in zip(names, keys) if k == keys[0]]
    return [os.path.join(folder, n) for n in names]


def clip_frame_indices(cfg, num_frames: int) -> np.ndarray:
    """``DATA.SEQ_LEN`` frames picked as the config's test sampler picks one clip."""
    from datasets.clip_sampling import dense_clip, tsn_segments
    from datasets.frame_sampling import sample_evenly
    d = cfg.DATA
    if cfg.TASK == "action":
        if d.TEST_SAMPLE == "dense":
            return dense_clip(num_frames, d.SEQ_LEN, d.FRAME_STRIDE, train=False)
        return tsn_segments(num_frames, d.SEQ_LEN, train=False)
    return sample_evenly(num_frames, d.SEQ_LEN)


def load_clip(cfg, path: str):
    """A video file or a frame folder -> ``(frames uint8 (T,C,H,W) as the model sees them,
    uint8 clip (C,T,H,W) for the model (which normalises it), source frame indices)``, with the
    config's test transform."""
    from datasets.action_transforms import build_action_transform
    from datasets.tracklet_dataset import read_frames
    from datasets.transforms import build_reid_transform
    from datasets.video_reader import VideoReadError, open_video
    d = cfg.DATA
    if os.path.isdir(path):
        files = tracklet_frames(path)
        idx = clip_frame_indices(cfg, len(files))
        try:
            raw = read_frames([files[i] for i in idx])
        except (OSError, ValueError, RuntimeError) as err:   # missing, empty, corrupt or odd-sized frames
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"the frames of {path!r} cannot be read ({reason}): pass a folder of readable "
                             "images of one size") from err
    else:
        size = (tuple(d.DECODE_SIZE) or None) if cfg.TASK == "action" else None
        try:
            with open_video(path, size=size) as video:
                idx = clip_frame_indices(cfg, video.num_frames)
                raw = video.read(idx)
        except VideoReadError as err:
            raise InputError(f"{err}: pass a readable video file or a folder of frames") from err
    if cfg.TASK == "action":
        transform = build_action_transform(False, crop_size=d.CROP_SIZE, short_side=d.SHORT_SIDE)
    else:
        transform = build_reid_transform(d.HEIGHT, d.WIDTH, False)
    clip = transform(raw)                                                    # uint8 (C, T, H, W)
    return clip.transpose(0, 1).contiguous(), clip, idx


def visualize_attention(config: str, checkpoint: str, input: str, out_png: str, overrides=()) -> str:
    """Attention heatmaps of a trained model on one clip of ``input`` (video file or frame folder):
    writes ``out_png`` and logs it to TensorBoard under ``OUTPUT_DIR/tb``; returns the PNG path."""
    from .evaluate import load_trained
    cfg, _, model, device = load_trained(config, checkpoint, overrides, task_needed=False)
    shown, clip, idx = load_clip(cfg, input)
    image = attention_strip(model, shown, clip.to(device), frame_labels=[f"#{i}" for i in idx])
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    image.save(out_png)
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(os.path.join(cfg.OUTPUT_DIR, "tb")) as writer:
        tag = os.path.basename(os.path.normpath(input))
        writer.add_image(f"attention/{tag}", np.asarray(image), dataformats="HWC")
    return out_png
