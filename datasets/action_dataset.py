"""Clip dataset for action recognition: ``(clip, label, index)`` from ``[(video path, label)]``.

>>> train = build_action_dataset(UCF101(root).samples, train=True, mode="tsn", clip_len=8, crop_size=112)
>>> clip, label, index = train[0]            # clip float (C, T, H, W)
>>> test = build_action_dataset(samples, train=False, mode="dense", clip_len=8, stride=2,
...                             num_clips=10, num_crops=3)
>>> views, label, index = test[0]            # views (V, C, T, H, W), V = clips x crops, clip-major

One item opens its video once and reads every frame of every view in one call (decord
``get_batch``, resized by the decoder when ``decode_size`` is set).

Unreadable videos: an item whose video raises ``VideoReadError`` is logged (WARNING, once per
path and process, with the reason) and REPLACED by the next readable sample in order, so every
batch keeps its size and the epoch goes on; the returned ``index`` is that of the sample actually
returned, and ``unreadable`` collects the skipped paths. For evaluation, drop broken files first
with ``filter_readable`` so no video is counted twice.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .action_transforms import IMAGENET_MEAN, IMAGENET_STD, build_action_transform
from .clip_sampling import ClipSampler
from .video_reader import VideoReadError, open_video

__all__ = ["ActionClipDataset", "build_action_dataset", "filter_readable"]

log = logging.getLogger(__name__)


class ActionClipDataset(Dataset):
    """``samples`` [(path, label)]; ``sampler(num_frames, rng)`` -> (T,) or (V, T) frame indices;
    ``transform`` maps uint8 ``(V, T, C, H, W)`` to float ``(V, [crops,] C, T, H, W)``
    (``build_action_transform``); None keeps uint8 frames in ``(C, T, H, W)`` layout.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], sampler: Callable, transform: Callable | None = None,
                 decode_size=None, backend: str = "auto", max_skips: int = 16):
        if not samples:
            raise ValueError("ActionClipDataset needs at least one sample")
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.labels = [label for _, label in self.samples]
        self.sampler, self.transform = sampler, transform
        self.decode_size, self.backend, self.max_skips = decode_size, backend, max_skips
        self.unreadable: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> torch.Tensor:
        path = self.samples[index][0]
        rng = np.random.default_rng(int(torch.randint(2 ** 62, (1,))))  # follows torch's (per-worker) seed
        with open_video(path, size=self.decode_size, backend=self.backend) as video:
            indices = np.atleast_2d(self.sampler(video.num_frames, rng))            # (V, T)
            frames = video.read(indices.reshape(-1))                               # (V*T, C, H, W)
        frames = frames.reshape(*indices.shape, *frames.shape[1:])                 # (V, T, C, H, W)
        if self.transform is None:
            clips = frames.transpose(1, 2).contiguous()                            # (V, C, T, H, W)
        else:
            clips = self.transform(frames)
            if clips.ndim == 6:                                                    # (V, crops, C, T, H, W)
                clips = clips.flatten(0, 1)
        return clips[0] if clips.shape[0] == 1 else clips

    def __getitem__(self, index: int):
        for attempt in range(min(self.max_skips, len(self.samples))):
            current = (index + attempt) % len(self.samples)
            path, label = self.samples[current]
            if path in self.unreadable:
                continue
            try:
                return self._load(current), label, current
            except VideoReadError as err:
                self.unreadable.add(path)
                log.warning("skipping unreadable video (sample %d replaced by the next one): %s", current, err)
        raise RuntimeError(f"{self.max_skips} videos in a row from sample {index} are unreadable; "
                           f"first ones: {sorted(self.unreadable)[:3]}")


def filter_readable(samples: Sequence[tuple[str, int]], backend: str = "auto"):
    """Split samples into (readable, unreadable) by opening each video (headers only); logs each bad one."""
    good, bad = [], []
    for sample in samples:
        try:
            with open_video(sample[0], backend=backend):
                good.append(sample)
        except VideoReadError as err:
            log.warning("excluding unreadable video: %s", err)
            bad.append(sample)
    return good, bad


def build_action_dataset(samples, train: bool, mode: str = "tsn", clip_len: int = 8, stride: int = 1,
                         num_clips: int = 1, num_crops: int = 1, crop_size: int = 224, short_side: int = 256,
                         train_crop: str = "multiscale", decode_size=None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         backend: str = "auto") -> ActionClipDataset:
    """Sampler + transform that agree with each other: ``mode`` tsn | dense; test views = clips x crops."""
    sampler = ClipSampler(mode, clip_len, stride, train, num_clips)
    transform = build_action_transform(train, crop_size=crop_size, short_side=short_side, mode=train_crop,
                                       num_crops=1 if train else num_crops, mean=mean, std=std)
    return ActionClipDataset(samples, sampler, transform, decode_size=decode_size, backend=backend)
