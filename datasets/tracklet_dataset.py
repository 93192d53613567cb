"""Torch datasets over re-ID tracklets: frames decoded with ``torchvision.io`` on demand."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from .frame_sampling import METHODS, sample_all, sample_dense, sample_evenly, sample_random
from .mars import Tracklet

# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they remain the
# fastest JPEG path here and the issue asks for torchvision.io, so keep them and stay quiet.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


def read_frames(paths: Sequence[str]) -> torch.Tensor:
    """Decode JPEG/PNG frames into one uint8 ``(T,3,H,W)`` tensor."""
    return torch.stack([decode_image(read_file(p), mode=ImageReadMode.RGB) for p in paths])


class TrackletDataset(Dataset):
    """Items are ``(clip, pid, camid, index)``.

    ``sample="evenly"``/``"random"``: ``clip`` is ``(C, seq_len, H, W)`` (training / fast testing).
    ``sample="dense"``: ``clip`` is ``(num_clips, C, seq_len, H, W)``, every frame once;
    ``sample="all"``: ``(1, C, L, H, W)`` with all L frames. Use :func:`collate_clips` to batch
    variable numbers of clips; the evaluator bounds memory by forwarding clips in chunks.
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int = 4, sample: str = "evenly",
                 transform: Callable | None = None, seed: int = 0):
        if sample not in METHODS:
            raise ValueError(f"sample must be one of {METHODS}, got {sample!r}")
        self.tracklets = list(tracklets)
        self.seq_len, self.sample, self.transform = seq_len, sample, transform
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Random sampling depends on (seed, epoch, index): reproducible and resumable."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.tracklets)

    def indices(self, i: int) -> np.ndarray:
        n = len(self.tracklets[i].frames)
        if self.sample == "evenly":
            return sample_evenly(n, self.seq_len)
        if self.sample == "random":
            return sample_random(n, self.seq_len, np.random.default_rng([self.seed, self.epoch, i]))
        if self.sample == "dense":
            return sample_dense(n, self.seq_len)
        return sample_all(n)

    def __getitem__(self, i: int):
        t = self.tracklets[i]
        idx = self.indices(i)
        flat = idx.reshape(-1)
        uniq, inverse = np.unique(flat, return_inverse=True)
        frames = read_frames([t.frames[k] for k in uniq])[torch.as_tensor(inverse)]
        if idx.ndim == 1:
            clip = self.transform(frames) if self.transform else frames.transpose(0, 1)
        else:
            frames = frames.view(idx.shape[0], idx.shape[1], *frames.shape[1:])
            clip = torch.stack([self.transform(c) if self.transform else c.transpose(0, 1) for c in frames])
        return clip, t.pid, t.camid, i


def collate_clips(batch):
    """Batch multi-clip items: clips concatenated to ``(sum clips, C, T, H, W)`` plus the owner index."""
    clips, pids, camids, index = zip(*batch)
    clips = [c.unsqueeze(0) if c.ndim == 4 else c for c in clips]
    owner = torch.cat([torch.full((c.shape[0],), k, dtype=torch.long) for k, c in enumerate(clips)])
    return torch.cat(clips), owner, torch.tensor(pids), torch.tensor(camids), torch.tensor(index)
