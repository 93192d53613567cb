"""Torch datasets over re-ID tracklets: only the sampled frames are read and decoded
(``torchvision.io``: one batched ``decode_jpeg`` call for JPEG frames), uint8 throughout. With
``encoded=True`` the workers only read the files and items carry the encoded bytes, for a batched
decode on the GPU in the main process (``datasets.device_decode``).

Unreadable frames (missing, empty or corrupt JPEGs) are replaced by the nearest readable frame of
the same tracklet (the next one first, then the previous one, then further out), so a clip keeps
its length and the run goes on. Each such frame is reported once (WARNING, with the reason) per
process, or, with ``skip_log`` (a ``BrokenVideoLog``), once across all DataLoader workers and DDP
ranks sharing the log file, which also serves the end-of-run summary. More than
``max_broken_share`` of the dataset's frames unreadable raises ``TooManyBrokenVideos``; so does a
tracklet without a single readable frame.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from .broken_files import BrokenVideoLog, TooManyBrokenVideos, check_broken_share
from .frame_sampling import METHODS, sample_all, sample_consecutive, sample_dense, sample_evenly, sample_random
from .mars import Tracklet

log = logging.getLogger(__name__)

# torchvision 0.29 marks its image codecs deprecated in favour of TorchCodec; they remain the
# fastest JPEG path here and the issue asks for torchvision.io, so keep them and stay quiet.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


JPEG_START, JPEG_END, PNG_START = b"\xff\xd8", b"\xff\xd9", b"\x89PNG"


def read_bytes(paths: Sequence[str]) -> list[torch.Tensor]:
    """Each file's bytes as a 1-D uint8 tensor (read straight into it); an empty file is an error."""
    out = []
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ValueError("empty file")
            data = torch.empty(size, dtype=torch.uint8)
            if f.readinto(memoryview(data.numpy())) != size:
                raise OSError("file shrank while being read")
        out.append(data)
    return out


def decode_frames(blobs: Sequence[torch.Tensor], device="cpu") -> list[torch.Tensor]:
    """Encoded images -> uint8 RGB ``(3,H,W)`` each, on ``device``: JPEG in one batched
    ``decode_jpeg`` call (nvjpeg on CUDA), anything else with ``decode_image``."""
    blobs = list(blobs)
    if all(bytes(b[:2].tolist()) == JPEG_START for b in blobs):
        return decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device)
    return [decode_image(b, mode=ImageReadMode.RGB).to(device) for b in blobs]


def read_frames(paths: Sequence[str]) -> torch.Tensor:
    """Decode JPEG/PNG frames into one uint8 ``(T,3,H,W)`` tensor."""
    return torch.stack(decode_frames(read_bytes(paths)))


def read_checked_bytes(paths: Sequence[str]) -> list[torch.Tensor]:
    """``read_bytes``, plus the checks a worker can make without decoding: a JPEG starts with SOI
    and ends with EOI (a truncated file does not), a PNG starts with its signature."""
    blobs = read_bytes(paths)
    for data in blobs:
        head, tail = bytes(data[:4].tolist()), bytes(data[-2:].tolist())
        if not ((head[:2] == JPEG_START and tail == JPEG_END) or head == PNG_START):
            raise ValueError("not a complete JPEG or PNG image")
    return blobs


class TrackletDataset(Dataset):
    """Items are ``(clip, pid, camid, index)``.

    ``sample="evenly"``/``"random"``/``"consecutive"``: ``clip`` is ``(C, seq_len, H, W)`` (training / fast testing).
    ``sample="dense"``: ``clip`` is ``(num_clips, C, seq_len, H, W)``, every frame once;
    ``sample="all"``: ``(1, C, L, H, W)`` with all L frames. Use :func:`collate_clips` to batch
    variable numbers of clips; the evaluator bounds memory by forwarding clips in chunks.
    ``skip_log`` / ``max_broken_share``: unreadable frames (see the module docstring).
    Clips are uint8; the model normalises them.

    ``encoded=True`` (no ``transform``): items are ``(data, lengths, frames, pid, camid, index,
    frame_numbers)``: the encoded bytes of the distinct frames sampled, end to end (``data``
    uint8, ``lengths`` int64), ``frames`` int64 ``(seq_len,)`` or ``(num_clips, seq_len)``
    indexing them, and ``frame_numbers`` the tracklet frames they are (for replacing one that
    fails to decode later). Batch
    them with ``device_decode.collate_encoded``. Unreadable frames are those that fail
    ``read_checked_bytes`` (missing, empty, truncated, not an image).
    """

    def __init__(self, tracklets: Sequence[Tracklet], seq_len: int = 4, sample: str = "evenly",
                 transform: Callable | None = None, skip_log: BrokenVideoLog | None = None,
                 max_broken_share: float = 1.0, encoded: bool = False):
        if sample not in METHODS:
            raise ValueError(f"sample must be one of {METHODS}, got {sample!r}")
        if encoded and transform is not None:
            raise ValueError("encoded items carry undecoded bytes: their transform runs after decoding, not here")
        self.tracklets = list(tracklets)
        self.seq_len, self.sample, self.transform = seq_len, sample, transform
        self.encoded = encoded
        self.skip_log, self.max_broken_share = skip_log, max_broken_share
        self.unreadable: set[str] = set()       # frame paths known to fail, in this process

    def set_epoch(self, epoch: int) -> None:
        """The workers about to start skip the frames already listed as unreadable. (Random frame
        choices come from torch's generator, seeded per item by the training loader.)"""
        self.unreadable |= self.broken_frames()

    def broken_frames(self) -> set[str]:
        """This dataset's frame paths known to be unreadable, here and in the shared log."""
        known = set(self.unreadable)
        if self.skip_log is not None:
            known |= set(self.skip_log.entries()) & self.frame_paths()
        return known

    def frame_paths(self) -> set[str]:
        """Every frame path of the dataset's tracklets (built once)."""
        if getattr(self, "_paths", None) is None:
            self._paths = {p for t in self.tracklets for p in t.frames}
        return self._paths

    def _skip(self, path: str, err: Exception, neighbour: str | None) -> None:
        if not os.path.isfile(path):
            reason = "no such file"
        elif os.path.getsize(path) == 0:
            reason = "empty file"
        else:   # torchvision prefixes its source location: "decode_jpeg, .../decode_jpeg.cpp:171, <what>"
            text = re.sub(r"^\w+, \S+:\d+, ", "", (str(err).strip().splitlines() or [""])[0])
            reason = f"cannot decode ({type(err).__name__}: {text})"[:300]
        self.unreadable.add(path)
        if self.skip_log is None or self.skip_log.record(path, reason):
            log.warning("unreadable frame %s (%s) replaced by %s", path, reason,
                        neighbour or "a neighbouring frame of its tracklet")
        where = self.skip_log.path if self.skip_log is not None else ""
        check_broken_share(len(self.broken_frames()), len(self.frame_paths()), self.max_broken_share, "frames",
                           where)

    def _load(self, paths: Sequence[str]) -> list[torch.Tensor]:
        """One tensor per frame: decoded uint8 (3, H, W), or its encoded bytes (``encoded``)."""
        return read_checked_bytes(paths) if self.encoded else decode_frames(read_bytes(paths))

    def _read(self, t: Tracklet, wanted: np.ndarray) -> list[torch.Tensor]:
        """``_load`` of frames ``wanted`` of ``t``, unreadable ones replaced (module docstring)."""
        paths = [t.frames[k] for k in wanted]
        if self.unreadable.isdisjoint(paths):
            try:
                return self._load(paths)
            except Exception:  # noqa: BLE001 - find the frame(s) at fault, one at a time
                pass
        return [self._nearest_readable(t, int(k))[0] for k in wanted]

    def replace_undecodable(self, i: int, k: int, err: Exception) -> torch.Tensor:
        """Frame ``k`` of tracklet ``i`` was read but does not decode (``encoded`` items are decoded
        later, in the main process: ``datasets.device_decode``). Reported like any unreadable
        frame; returns the nearest frame of the tracklet that decodes (uint8 (3, H, W), CPU)."""
        t = self.tracklets[i]
        self.unreadable.add(t.frames[k])
        frame, path = self._nearest_readable(t, k, decode=True)
        self._skip(t.frames[k], err, path)
        return frame

    def _nearest_readable(self, t: Tracklet, k: int, decode: bool = False) -> tuple[torch.Tensor, str]:
        """(frame, path) of the readable frame nearest to frame ``k`` of ``t`` (``decode``: decoded
        on the CPU whatever ``encoded`` says); the unreadable frames met on the way are reported."""
        n, failed = len(t.frames), []
        for j in sorted(range(n), key=lambda j: (abs(j - k), j < k)):   # k, k+1, k-1, k+2, ...
            path = t.frames[j]
            if path in self.unreadable:
                continue
            try:
                frame = decode_frames(read_bytes([path]))[0] if decode else self._load([path])[0]
            except Exception as err:  # noqa: BLE001 - missing file, empty or corrupt JPEG
                failed.append((path, err))
                continue
            for bad, err in failed:
                self._skip(bad, err, path)
            return frame, path
        for bad, err in failed:
            self._skip(bad, err, None)
        raise TooManyBrokenVideos(f"none of the {n} frames of a tracklet (pid {t.pid}, camera {t.camid}) can be read, "
                                  f"e.g. {t.frames[0]!r}")

    def __len__(self) -> int:
        return len(self.tracklets)

    def indices(self, i: int) -> np.ndarray:
        n = len(self.tracklets[i].frames)
        if self.sample == "evenly":
            return sample_evenly(n, self.seq_len)
        if self.sample in ("random", "consecutive"):
            fn = sample_random if self.sample == "random" else sample_consecutive
            # torch's generator, which the training loader seeds per (seed, epoch, index, repeat)
            # (engine.loaders): a tracklet drawn twice in an epoch gets other frames
            return fn(n, self.seq_len, np.random.default_rng(int(torch.randint(2 ** 62, (1,)))))
        if self.sample == "dense":
            return sample_dense(n, self.seq_len)
        return sample_all(n)

    def __getitem__(self, i: int):
        t = self.tracklets[i]
        idx = self.indices(i)
        uniq, inverse = np.unique(idx.reshape(-1), return_inverse=True)
        loaded = self._read(t, uniq)
        if self.encoded:
            lengths = torch.tensor([len(b) for b in loaded], dtype=torch.int64)
            return (torch.cat(loaded), lengths, torch.as_tensor(inverse).view(idx.shape), t.pid, t.camid, i,
                    torch.as_tensor(uniq, dtype=torch.int64))
        frames = torch.stack([loaded[k] for k in inverse.reshape(-1)])        # one copy, in clip order
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
