"""MARS frames decoded on the GPU: workers read the encoded JPEG bytes, the main process decodes
a whole batch with one ``torchvision.io.decode_jpeg(list, device="cuda")`` call (nvjpeg), then
resizes, and for training flips, pads + crops and erases, on the device, vectorised over clips.

>>> data = TrackletDataset(tracklets, 8, "random", encoded=True)
>>> loader = DeviceDecodeLoader(DataLoader(data, batch_size=64, collate_fn=collate_encoded),
...                             DeviceClipDecoder(256, 128, "cuda", train=True), seed=0)
>>> clips, pids, camids, index = next(iter(loader))     # clips uint8 (64, 3, 8, 256, 128) on the GPU

``DeviceDecodeLoader`` yields what the CPU path's loader yields (``(clips, pids, camids, index)``,
or with ``multi_clip`` the ``collate_clips`` tuple ``(clips, owner, pids, camids, index)``), clips
already on the device, so trainer and evaluator run unchanged. The training augmentation draws
from a generator seeded with (seed, epoch): a resumed run draws the same. On the CPU (tests) the
same code decodes with libjpeg. The per-worker CPU path stays the default off CUDA
(``DATA.DECODE_DEVICE``).
"""
from __future__ import annotations

import logging

import torch
from torchvision.transforms.v2 import functional as F

from .device_transforms import apply_reid_augment, draw_reid_params
from .tracklet_dataset import decode_frames
from .transforms import mean_colour
from models.input_norm import IMAGENET_MEAN

__all__ = ["collate_encoded", "DeviceClipDecoder", "DeviceDecodeLoader", "gpu_jpeg_works"]

log = logging.getLogger(__name__)


def collate_encoded(batch):
    """Batch ``TrackletDataset(encoded=True)`` items: ``(data, lengths, clip_frames, owner, pids,
    camids, index, frame_ids)``; ``clip_frames`` int64 ``(num_clips, T)`` index the batch's
    frames, ``owner`` (num_clips,) the item each clip belongs to, ``frame_ids`` ``(frames, 2)`` the
    (dataset index, tracklet frame number) of each of the batch's frames."""
    data, lengths, frames, pids, camids, index, numbers = zip(*batch)
    clip_frames, owner, offset = [], [], 0
    for k, (f, n) in enumerate(zip(frames, lengths)):
        f = f.reshape(-1, f.shape[-1])
        clip_frames.append(f + offset)
        owner.append(torch.full((f.shape[0],), k, dtype=torch.int64))
        offset += len(n)
    return (torch.cat(data), torch.cat(lengths), torch.cat(clip_frames), torch.cat(owner), torch.tensor(pids),
            torch.tensor(camids), torch.tensor(index),
            torch.cat([torch.stack([torch.full_like(k, i), k], 1) for i, k in zip(index, numbers)]))


class DeviceClipDecoder:
    """Encoded frames -> uint8 clips ``(N, C, T, H, W)`` on ``device``: batched decode, resize to
    ``height`` x ``width`` (antialiased, as ``v2.Resize``) and, with ``train``, the re-ID
    augmentation of ``build_reid_transform`` (``datasets.device_transforms``)."""

    def __init__(self, height: int, width: int, device="cuda", train: bool = False, flip_prob: float = 0.5,
                 padding: int = 10, erasing_prob: float = 0.5, mean=IMAGENET_MEAN):
        self.size, self.device, self.train = (int(height), int(width)), torch.device(device), train
        self.flip_prob, self.padding, self.erasing_prob = flip_prob, padding, erasing_prob
        self.fill = mean_colour(mean)

    def frames(self, data: torch.Tensor, lengths: torch.Tensor, repair=None) -> torch.Tensor:
        """uint8 ``(F, 3, H, W)`` on the device: every frame decoded, resized where its size differs.
        Should the batched decode fail, each frame is decoded alone (on the CPU when the device
        refuses it), and ``repair({slot: error})`` gives stand-ins for those that do not decode at
        all ({slot: uint8 (3, H, W)}; without ``repair`` the error is raised)."""
        blobs = torch.split(data, lengths.tolist())
        try:
            decoded = decode_frames(blobs, self.device)
        except Exception:  # noqa: BLE001 - a corrupt image in the batch: find it below
            if repair is None:
                raise
            decoded = self._decode_each(blobs, repair)
        by_size: dict[tuple, list[int]] = {}
        for k, frame in enumerate(decoded):
            by_size.setdefault(tuple(frame.shape[-2:]), []).append(k)
        if len(by_size) == 1 and next(iter(by_size)) == self.size:
            return torch.stack(decoded)
        out = torch.empty((len(decoded), 3, *self.size), dtype=torch.uint8, device=self.device)
        for ks in by_size.values():
            group = torch.stack([decoded[k] for k in ks])
            out[torch.as_tensor(ks, device=self.device)] = F.resize(group, list(self.size), antialias=True)
        return out

    def _decode_each(self, blobs, repair) -> list[torch.Tensor]:
        decoded, failed = [], {}
        for slot, blob in enumerate(blobs):
            frame = None
            for device in dict.fromkeys([self.device, torch.device("cpu")]):   # libjpeg may read what nvjpeg refuses
                try:
                    frame = decode_frames([blob], device)[0].to(self.device)
                    break
                except Exception as err:  # noqa: BLE001 - kept for the report
                    failed[slot] = err
            if frame is not None:
                failed.pop(slot, None)
            decoded.append(frame)
        for slot, frame in repair(failed).items():
            decoded[slot] = frame.to(self.device)
        return decoded

    def __call__(self, data: torch.Tensor, lengths: torch.Tensor, clip_frames: torch.Tensor,
                 generator: torch.Generator | None = None, repair=None) -> torch.Tensor:
        clips = self.frames(data, lengths, repair)[clip_frames.to(self.device)]        # (N, T, 3, H, W)
        if not self.train:
            return clips.transpose(1, 2).contiguous()
        if generator is None:
            raise ValueError("training augmentation needs a seeded generator (resumable draws)")
        params = draw_reid_params(clips.shape[0], *self.size, generator, self.flip_prob, self.padding,
                                  self.erasing_prob)
        return apply_reid_augment(clips, params, self.padding, self.fill)


class DeviceDecodeLoader:
    """Wraps a ``DataLoader`` over ``TrackletDataset(encoded=True)`` (``collate_fn=collate_encoded``)
    and yields decoded batches on the device (module docstring). ``len``, ``sampler``, ``dataset``
    and ``batch_size`` are the wrapped loader's."""

    def __init__(self, loader, decoder: DeviceClipDecoder, seed: int = 0, multi_clip: bool = False):
        self.loader, self.decoder, self.seed, self.multi_clip = loader, decoder, seed, multi_clip

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):
        if name in ("sampler", "dataset", "batch_size", "num_workers"):
            return getattr(self.loader, name)
        raise AttributeError(name)

    def __iter__(self):
        epoch = getattr(self.loader.dataset, "epoch", None) or 0
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7919 + 17)
        for data, lengths, clip_frames, owner, pids, camids, index, frame_ids in self.loader:
            clips = self.decoder(data, lengths, clip_frames, generator, lambda failed: self._repair(frame_ids, failed))
            yield (clips, owner, pids, camids, index) if self.multi_clip else (clips, pids, camids, index)


    def _repair(self, frame_ids: torch.Tensor, failed: dict) -> dict:
        """Stand-ins for the batch's frames that do not decode ({slot: error}): slot ``s`` is frame
        ``frame_ids[s, 1]`` of tracklet ``frame_ids[s, 0]``, which the dataset replaces by its
        nearest decodable neighbour and reports (``TrackletDataset``)."""
        dataset = self.loader.dataset
        return {slot: dataset.replace_undecodable(*map(int, frame_ids[slot].tolist()), err)
                for slot, err in failed.items()}


def gpu_jpeg_works(device) -> bool:
    """Whether ``decode_jpeg(..., device=device)`` decodes here (CUDA present, nvjpeg built in)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    from torchvision.io import encode_jpeg
    try:
        probe = encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8))
        return tuple(decode_frames([probe], device)[0].shape) == (3, 8, 8)
    except Exception as err:  # noqa: BLE001 - a torchvision without nvjpeg, a driver error
        log.warning("JPEG decoding on %s is not available (%s); frames are decoded by the CPU workers", device, err)
        return False
