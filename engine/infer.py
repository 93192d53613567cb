"""Clip-level inference on a user's own videos: sliding windows, top-k per window and per video."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from tqdm import tqdm

from .evaluate import load_trained


def _class_names(checkpoint: str, num_classes: int) -> list[str]:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    names = ckpt.get("classes")
    return list(names) if names else [str(i) for i in range(num_classes)]


@torch.no_grad()
def infer_videos(config: str, checkpoint: str, videos, out_json: str | None = None, overrides=(),
                 num_windows: int = 0, topk: int = 5, batch: int = 8) -> list[dict]:
    """Per video: windows of ``DATA.SEQ_LEN`` frames at ``DATA.FRAME_STRIDE`` (dense sampling) —
    ``num_windows`` evenly spaced, or every non-overlapping window when 0 — each with its start/end
    seconds and top-k ``[label, score]``; plus the video-level top-k (mean of window softmaxes).
    Unreadable videos are reported with their error and skipped."""
    from datasets.action_transforms import build_action_transform
    from datasets.clip_sampling import uniform_clips, window_seconds
    from datasets.video_reader import VideoReadError, open_video
    cfg, _, model, device = load_trained(config, checkpoint, overrides, task_needed=False)
    if cfg.TASK != "action":
        raise ValueError("tools/infer.py runs action models (TASK action); re-ID models are evaluated with tools/test.py")
    d = cfg.DATA
    names = _class_names(checkpoint, model.head.fc.out_features)
    transform = build_action_transform(False, crop_size=d.CROP_SIZE, short_side=d.SHORT_SIDE, mean=d.MEAN, std=d.STD)
    span = (d.SEQ_LEN - 1) * d.FRAME_STRIDE + 1
    results = []
    for path in tqdm(list(videos), desc="videos", dynamic_ncols=True):
        try:
            with open_video(path, size=tuple(d.DECODE_SIZE) or None) as video:
                n, fps = video.num_frames, video.fps
                count = num_windows or max(1, n // span)
                windows = uniform_clips(n, d.SEQ_LEN, d.FRAME_STRIDE, count)
                frames = video.read(windows.indices.reshape(-1))
        except VideoReadError as err:
            results.append({"path": path, "error": str(err)})
            continue
        clips = transform(frames.reshape(*windows.indices.shape, *frames.shape[1:]))  # (V,C,T,H,W)
        probs = torch.cat([model(clips[s:s + batch].to(device)).float().softmax(-1).cpu()
                           for s in range(0, len(clips), batch)])
        seconds = window_seconds(windows, fps)
        k = min(topk, probs.shape[1])

        def top(p):
            s, i = p.topk(k)
            return [[names[j], round(float(v), 4)] for v, j in zip(s, i)]

        results.append({"path": path, "fps": fps, "num_frames": n,
                        "windows": [{"start": round(float(a), 3), "end": round(float(b), 3), "topk": top(p)}
                                    for (a, b), p in zip(np.asarray(seconds), probs)],
                        "video_topk": top(probs.mean(0))})
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        tmp = out_json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, out_json)
    return results
