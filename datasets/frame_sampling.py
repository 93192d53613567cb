"""Frame indices for tracklets (re-ID): ``evenly``, ``random``, ``consecutive``, ``dense`` and ``all``.

All functions return int64 numpy arrays; a tracklet shorter than ``seq_len`` is padded by
repeating its frames in order (as torchreid does for training).
"""
from __future__ import annotations

import numpy as np

METHODS = ("evenly", "random", "consecutive", "dense", "all")


def _pad(idx: np.ndarray, seq_len: int) -> np.ndarray:
    """Loop the indices until there are ``seq_len`` of them (order kept)."""
    return np.resize(idx, seq_len) if len(idx) < seq_len else idx


def sample_evenly(num_frames: int, seq_len: int) -> np.ndarray:
    """``seq_len`` frames spread evenly over the tracklet (the middle of each of seq_len segments)."""
    if num_frames >= seq_len:
        return ((np.arange(seq_len) + 0.5) * num_frames / seq_len).astype(np.int64)
    return _pad(np.arange(num_frames), seq_len)


def sample_random(num_frames: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """Restricted random sampling (Li et al., CVPR 2018): one random frame from each of seq_len chunks."""
    if num_frames < seq_len:
        return _pad(np.arange(num_frames), seq_len)
    edges = np.linspace(0, num_frames, seq_len + 1)
    lo, hi = np.floor(edges[:-1]).astype(np.int64), np.floor(edges[1:]).astype(np.int64)
    return lo + (rng.random(seq_len) * (hi - lo)).astype(np.int64)


def sample_consecutive(num_frames: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """``seq_len`` adjacent frames from a random start (GLTR, Li et al., ICCV 2019, Sec. 4.2:
    "16 adjacent frames" per training sequence)."""
    if num_frames < seq_len:
        return _pad(np.arange(num_frames), seq_len)
    return int(rng.integers(0, num_frames - seq_len + 1)) + np.arange(seq_len, dtype=np.int64)


def sample_dense(num_frames: int, seq_len: int) -> np.ndarray:
    """All frames as consecutive clips of seq_len: shape (num_clips, seq_len); the last clip is padded."""
    num_clips = -(-num_frames // seq_len)
    idx = np.arange(num_clips * seq_len)
    return np.minimum(idx, num_frames - 1).reshape(num_clips, seq_len) if num_frames % seq_len == 0 \
        else np.concatenate([np.arange((num_clips - 1) * seq_len),
                             _pad(np.arange((num_clips - 1) * seq_len, num_frames), seq_len)]).reshape(num_clips, seq_len)


def sample_all(num_frames: int) -> np.ndarray:
    """Every frame, in order: one clip of the tracklet's length."""
    return np.arange(num_frames)[None, :]
