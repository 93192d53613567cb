"""Frame indices for action clips: TSN segments, dense clips and uniform multi-view test windows.

Every function is a pure, vectorised function of ``num_frames`` (plus a numpy ``Generator`` for
the random training draws) and returns int64 indices inside ``[0, num_frames)``.

- ``tsn_segments``: TSN (Wang et al., ECCV 2016, arXiv:1608.00859): the video is cut into K equal
  segments; training takes a random frame in each, test the centre of each. ``num_clips`` test views
  shift the pick inside every segment to (v + 0.5) / num_clips of its length.
- ``dense_clip``: ``clip_len`` frames ``stride`` apart (I3D/SlowFast style); random start in
  training, the centre window at test time.
- ``uniform_clips``: ``num_clips`` windows of ``clip_len`` x ``stride`` whose starts sit at the
  centres of ``num_clips`` equal chunks of the possible start range (mmaction2's test sampling),
  with each window's first/last frame so inference can report seconds (``window_seconds``, from
  the frames' own timestamps).

Videos shorter than a window repeat their last frame (indices are clamped), so every clip has
exactly the asked number of frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["tsn_segments", "dense_clip", "uniform_clips", "window_seconds", "ClipWindows", "ClipSampler",
           "build_clip_sampler"]

MODES = ("tsn", "dense")  # clip sampling of action videos (DATA.TRAIN_SAMPLE / TEST_SAMPLE)


def _check(num_frames: int, *positive: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if min(positive) < 1:
        raise ValueError(f"sampling parameters must be >= 1, got {positive}")


def tsn_segments(num_frames: int, num_segments: int, train: bool, rng: np.random.Generator | None = None,
                 num_clips: int = 1) -> np.ndarray:
    """One frame per segment. Returns ``(num_segments,)``, or ``(num_clips, num_segments)`` when
    ``num_clips > 1`` at test time.

    Segment k covers frames ``[floor(k n / K), floor((k+1) n / K))``; training draws uniformly in
    it, test takes ``floor((k + (v + 0.5) / V) n / K)`` for view v of V. When n < K the segments are
    shorter than a frame and frames repeat in order.
    """
    _check(num_frames, num_segments, num_clips)
    k = np.arange(num_segments)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        lo = (k * num_frames) // num_segments
        hi = ((k + 1) * num_frames) // num_segments
        idx = lo + (rng.random(num_segments) * (hi - lo)).astype(np.int64)
        return np.minimum(idx, num_frames - 1)
    frac = (np.arange(num_clips) + 0.5) / num_clips
    idx = np.floor((k[None, :] + frac[:, None]) * num_frames / num_segments).astype(np.int64)
    idx = np.minimum(idx, num_frames - 1)
    return idx[0] if num_clips == 1 else idx


def dense_clip(num_frames: int, clip_len: int, stride: int, train: bool,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """``(clip_len,)`` frames ``start + i * stride``; start random in training, centred at test time."""
    _check(num_frames, clip_len, stride)
    max_start = max(num_frames - ((clip_len - 1) * stride + 1), 0)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, max_start + 1))
    else:
        start = max_start // 2
    return np.minimum(start + np.arange(clip_len) * stride, num_frames - 1)


class ClipWindows(NamedTuple):
    """Test windows: ``indices`` (V, clip_len); ``start`` / ``end`` (V,) first and last frame (inclusive)."""

    indices: np.ndarray
    start: np.ndarray
    end: np.ndarray


def uniform_clips(num_frames: int, clip_len: int, stride: int, num_clips: int) -> ClipWindows:
    """``num_clips`` evenly spaced windows: starts at the centres of equal chunks of [0, n - span]."""
    _check(num_frames, clip_len, stride, num_clips)
    span = (clip_len - 1) * stride + 1
    start_range = max(num_frames - span, 0) + 1  # number of possible starts
    starts = np.floor((np.arange(num_clips) + 0.5) * start_range / num_clips).astype(np.int64)
    indices = np.minimum(starts[:, None] + np.arange(clip_len)[None, :] * stride, num_frames - 1)
    return ClipWindows(indices, starts, indices[:, -1].copy())


def window_seconds(windows: ClipWindows, timestamps: np.ndarray) -> np.ndarray:
    """(V, 2) start/end times in seconds from the frames' own ``timestamps`` ((num_frames, 2) start
    and end of each frame, e.g. ``video.timestamps()``): a window starts when its first frame
    starts and ends when its last frame ends, so variable frame rates are reported exactly."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    return np.stack([timestamps[windows.start, 0], timestamps[windows.end, 1]], axis=1)


@dataclass(frozen=True)
class ClipSampler:
    """A sampler bound to its parameters: ``sampler(num_frames, rng) -> (V, T)`` int64 indices.

    ``mode`` is ``"tsn"`` (``clip_len`` = segments) or ``"dense"``; ``num_clips`` test views
    (training always gives one view).
    """

    mode: str = "tsn"
    clip_len: int = 8
    stride: int = 1
    train: bool = True
    num_clips: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be 'tsn' or 'dense', got {self.mode!r}")

    @property
    def num_views(self) -> int:
        return 1 if self.train else self.num_clips

    def __call__(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if self.mode == "tsn":
            views = 1 if self.train else self.num_clips
            return np.atleast_2d(tsn_segments(num_frames, self.clip_len, self.train, rng, num_clips=views))
        if self.train:
            return dense_clip(num_frames, self.clip_len, self.stride, True, rng)[None, :]
        return uniform_clips(num_frames, self.clip_len, self.stride, self.num_clips).indices


def build_clip_sampler(mode: str, clip_len: int, stride: int = 1, train: bool = True,
                       num_clips: int = 1) -> ClipSampler:
    """Config-friendly constructor (``DATA.TRAIN_SAMPLE`` / ``DATA.TEST_SAMPLE`` = tsn | dense)."""
    return ClipSampler(mode, clip_len, stride, train, num_clips)
