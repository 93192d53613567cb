"""Clip dataset for action recognition: ``(clip, label, index)`` from ``[(video path, label)]``.

>>> train = build_action_dataset(UCF101(root).samples, train=True, mode="tsn", clip_len=8, crop_size=112)
>>> clip, label, index = train[0]            # clip uint8 (C, T, H, W)
>>> test = build_action_dataset(samples, train=False, mode="dense", clip_len=8, stride=2,
...                             num_clips=10, num_crops=3)
>>> views, label, index = test[0]            # views (V, C, T, H, W), V = clips x crops, clip-major

One item opens its video once and reads every frame of every view in one call (decord
``get_batch``, resized by the decoder when ``decode_size`` is set).

Unreadable videos: an item whose video raises ``VideoReadError`` is REPLACED by the next readable
sample in order, so every batch keeps its size and the epoch goes on; the returned ``index`` is
that of the sample actually returned, and ``unreadable`` collects the skipped paths. Videos shorter
than a clip are not broken: the samplers repeat their frames. Each skip is logged (WARNING, with
the reason) once per path: per process, or, with ``skip_log`` (a ``BrokenVideoLog``), once across
all DataLoader workers and DDP ranks that share the log file, which also serves the end-of-run
summary. When more than ``max_broken_share`` of the samples have proved unreadable the dataset
raises ``TooManyBrokenVideos``. For evaluation, drop broken files first with ``filter_readable``
so no video is counted twice.

>>> log = BrokenVideoLog("outputs/run/broken_videos.tsv", run="my-run")   # datasets.broken_files
>>> train = build_action_dataset(samples, train=True, skip_log=log, max_broken_share=0.1)
>>> log.entries()                            # {path: reason} of every video skipped so far
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .action_transforms import build_action_transform
from .broken_files import BrokenVideoLog, TooManyBrokenVideos, check_broken_share
from .clip_sampling import ClipSampler
from .video_reader import VideoReadError, open_video

__all__ = ["ActionClipDataset", "BrokenVideoLog", "TooManyBrokenVideos", "build_action_dataset",
           "filter_readable", "check_broken_share"]

log = logging.getLogger(__name__)


class ActionClipDataset(Dataset):
    """``samples`` [(path, label)]; ``sampler(num_frames, rng)`` -> (T,) or (V, T) frame indices;
    ``transform`` maps uint8 ``(V, T, C, H, W)`` to uint8 ``(V, [crops,] C, T, H, W)``
    (``build_action_transform``); None keeps the frames, in ``(C, T, H, W)`` layout.
    ``skip_log``: a ``BrokenVideoLog`` shared across processes (None: per-process reports only);
    ``max_broken_share``: the share of unreadable samples that stops the run (1.0: never).
    """

    def __init__(self, samples: Sequence[tuple[str, int]], sampler: Callable, transform: Callable | None = None,
                 decode_size=None, backend: str = "auto", skip_log: BrokenVideoLog | None = None,
                 max_broken_share: float = 1.0):
        if not samples:
            raise ValueError("ActionClipDataset needs at least one sample")
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.labels = [label for _, label in self.samples]
        self.sampler, self.transform = sampler, transform
        self.decode_size, self.backend = decode_size, backend
        self.skip_log, self.max_broken_share = skip_log, max_broken_share
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

    def set_epoch(self, epoch: int) -> None:
        """At the start of an epoch (in each loader worker too): skip the videos known to be broken."""
        self.unreadable |= self.broken_paths()

    def broken_paths(self) -> set[str]:
        """The samples' paths known to be unreadable here and in the shared log."""
        known = set(self.unreadable)
        if self.skip_log is not None:
            known |= set(self.skip_log.entries()) & {path for path, _ in self.samples}
        return known

    def _skip(self, index: int, err: VideoReadError) -> None:
        path = self.samples[index][0]
        self.unreadable.add(path)
        new = self.skip_log.record(path, err.reason) if self.skip_log is not None else True
        if new:
            log.warning("skipping unreadable video (sample %d replaced by the next one): %s", index, err)
        num_paths = len({p for p, _ in self.samples})
        where = self.skip_log.path if self.skip_log is not None else ""
        check_broken_share(len(self.broken_paths()), num_paths, self.max_broken_share, "videos", where)

    def __getitem__(self, index: int):
        for step in range(len(self.samples)):
            current = (index + step) % len(self.samples)
            path, label = self.samples[current]
            if path in self.unreadable:
                continue
            try:
                return self._load(current), label, current
            except VideoReadError as err:
                self._skip(current, err)
        raise RuntimeError(f"no readable video left: all {len(self.unreadable)} distinct videos are unreadable, "
                           f"e.g. {sorted(self.unreadable)[:3]}")


def filter_readable(samples: Sequence[tuple[str, int]], backend: str = "auto",
                    skip_log: BrokenVideoLog | None = None):
    """Split samples into (readable, unreadable) by opening each video (headers only); logs each bad
    one (once across processes when ``skip_log`` is given, which also records it)."""
    good, bad = [], []
    for sample in samples:
        try:
            with open_video(sample[0], backend=backend):
                good.append(sample)
        except VideoReadError as err:
            if skip_log is None or skip_log.record(sample[0], err.reason):
                log.warning("excluding unreadable video: %s", err)
            bad.append(sample)
    return good, bad


def build_action_dataset(samples, train: bool, mode: str = "tsn", clip_len: int = 8, stride: int = 1,
                         num_clips: int = 1, num_crops: int = 1, crop_size: int = 224, short_side: int = 256,
                         train_crop: str = "multiscale", decode_size=None, backend: str = "auto",
                         skip_log: BrokenVideoLog | None = None, max_broken_share: float = 1.0) -> ActionClipDataset:
    """Sampler + transform that agree with each other: ``mode`` tsn | dense; test views = clips x crops."""
    sampler = ClipSampler(mode, clip_len, stride, train, num_clips)
    transform = build_action_transform(train, crop_size=crop_size, short_side=short_side, mode=train_crop,
                                       num_crops=1 if train else num_crops)
    return ActionClipDataset(samples, sampler, transform, decode_size=decode_size, backend=backend,
                             skip_log=skip_log, max_broken_share=max_broken_share)
