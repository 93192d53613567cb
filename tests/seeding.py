"""What the training loader draws for one item (tests that need to know which frame it reads)."""
import torch

from engine.loaders import seed_item


def seeded_indices(dataset, seed: int, epoch: int, index: int, repeat: int = 0):
    """``dataset.indices(index)`` as drawn by the training loader's item ``(epoch, index, repeat)``."""
    with torch.random.fork_rng(devices=[]):
        seed_item(seed, epoch, index, repeat)
        return dataset.indices(index)
