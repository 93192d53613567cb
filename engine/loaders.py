"""DataLoaders for training and evaluation: persistent workers with prefetch, pinned batches,
per-item seeding that keeps ``--resume`` exact, and shards without padding for evaluation.

Per-item seeding: the training sampler tags every index with the epoch (``EpochTagged``) and the
dataset wrapper (``EpochSeeded``) seeds Python's, NumPy's and torch's global RNGs from
``(seed, epoch, index)`` before loading the item; an index the sampler repeats within an epoch (the
P x K sampler does, for identities with fewer than K tracklets) adds its occurrence number, so each
repeat gets its own augmentation. A clip's random crop, flip or frame choice is
then a function of those three numbers alone: the same whether the worker was started this epoch
or (persistent workers) several epochs ago, whichever worker draws it and however many workers
there are, so a resumed run sees the very batches of an uninterrupted one. The wrapper also hands
the epoch to the wrapped dataset (``set_epoch``) inside each worker, which a persistent worker's
copy of the dataset would otherwise never see. In the main process (``num_workers=0``) the global
RNG states are restored after each item, so data loading does not shift the training RNG.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

PREFETCH_FACTOR = 4  # batches each worker keeps ready (DataLoader's default is 2)


def item_seed(seed: int, epoch: int, index: int, repeat: int = 0) -> int:
    """A 63-bit seed drawn from ``(seed, epoch, index)``, plus ``repeat`` for the second and later
    draws of an index in one epoch (NumPy's SeedSequence mixing)."""
    entropy = [seed, epoch, index] + ([repeat] if repeat else [])
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def seed_item(seed: int, epoch: int, index: int, repeat: int = 0) -> None:
    """Seed Python's, NumPy's and torch's CPU generator for one training item, as the training
    loader does before loading it (CUDA's generator stays the trainer's)."""
    s = item_seed(seed, epoch, index, repeat)
    random.seed(s)
    np.random.seed(s % 2 ** 32)
    torch.default_generator.manual_seed(s)


class EpochTagged(Sampler):
    """Wraps a sampler: yields ``(epoch, index, repeat)`` (``repeat``: earlier draws of ``index``
    this epoch); ``set_epoch`` reaches the wrapped sampler too."""

    def __init__(self, sampler: Sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __getattr__(self, name: str):
        """Everything else is the wrapped sampler's (e.g. ``batches``)."""
        if name == "sampler" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __iter__(self):
        epoch, seen = self.epoch, {}
        for i in self.sampler:
            i = int(i)
            seen[i] = seen.get(i, -1) + 1
            yield epoch, i, seen[i]

    def __len__(self) -> int:
        return len(self.sampler)


class EpochSeeded(Dataset):
    """Wraps a dataset for ``EpochTagged`` indices: seeds the global RNGs from ``(seed, epoch,
    index)`` and calls the dataset's ``set_epoch`` whenever the epoch changes in this process."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        """Everything else is the wrapped dataset's (e.g. ``frame_paths``, ``samples``)."""
        if name == "dataset" or name.startswith("__"):  # unset yet (unpickling); no batch-fetch bypass
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch

    def _load(self, epoch: int, index: int, repeat: int):
        self.set_epoch(epoch)
        seed_item(self.seed, epoch, index, repeat)
        return self.dataset[index]

    def __getitem__(self, key):
        epoch, index, repeat = key
        if get_worker_info() is not None:         # a worker's RNG serves only its items
            return self._load(epoch, index, repeat)
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            try:
                return self._load(epoch, index, repeat)
            finally:
                random.setstate(py)
                np.random.set_state(npy)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of ``range(size)``: every index on exactly one rank,
    no padding duplicates (the ranks may get one item more or less)."""

    def __init__(self, size: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.size, self.rank, self.world = size, rank, world

    def __iter__(self):
        return iter(range(self.rank, self.size, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world))


def make_loader(dataset: Dataset, *, batch_size: int, num_workers: int, pin_memory: bool, sampler=None,
                train: bool = False, seed: int = 0, **kw) -> DataLoader:
    """A training loader (``train=True``: epoch-tagged ``sampler``, per-item seeding, persistent
    workers) or an evaluation loader (workers started for each pass). Both prefetch
    ``PREFETCH_FACTOR`` batches per worker and pin batches when ``pin_memory`` (CUDA training)."""
    if train:
        dataset, sampler = EpochSeeded(dataset, seed), EpochTagged(sampler)
    extra = dict(persistent_workers=train, prefetch_factor=PREFETCH_FACTOR) if num_workers > 0 else {}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, **extra, **kw)
