"""Training loaders with persistent workers: per-item seeding keeps every epoch's batches a
function of (seed, epoch, index), so a resumed run (fresh workers) sees the batches of an
uninterrupted one; evaluation shards cover every item once."""
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from engine.loaders import ShardSampler, make_loader


class RandomItems(Dataset):
    """Each item draws from torch's, NumPy's and Python's global RNGs and reports the epoch its
    copy of the dataset was told about."""

    def __init__(self, n=12):
        self.n, self.epoch = n, -1

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor([i, self.epoch, torch.rand(()).item(), np.random.rand(), random.random()])


def epochs(loader, which):
    out = []
    for epoch in which:
        loader.sampler.set_epoch(epoch)
        out.append(torch.cat(list(loader)))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_sees_the_same_batches(workers):
    def loader():
        return make_loader(RandomItems(), batch_size=4, num_workers=workers, pin_memory=False,
                           sampler=SequentialSampler(range(12)), train=True, seed=3)
    straight = loader()
    assert straight.persistent_workers == (workers > 0)
    e0, e1, e2 = epochs(straight, [0, 1, 2])
    resumed = epochs(loader(), [1, 2])                          # fresh workers from epoch 1 on
    assert torch.equal(resumed[0], e1) and torch.equal(resumed[1], e2)
    assert torch.equal(e1[:, 1], torch.ones(12))                # the workers' datasets know the epoch
    assert not torch.equal(e0[:, 2:], e1[:, 2:])                # new epoch, new random draws
    for col in range(2, 5):                                     # items differ within an epoch too
        assert len(set(e0[:, col].tolist())) == 12


def test_worker_count_does_not_change_the_data():
    def batches(workers):
        loader = make_loader(RandomItems(), batch_size=4, num_workers=workers, pin_memory=False,
                             sampler=SequentialSampler(range(12)), train=True, seed=3)
        return epochs(loader, [5])[0]
    assert torch.equal(batches(0), batches(2))


def test_main_process_loading_leaves_the_training_rng_alone():
    loader = make_loader(RandomItems(), batch_size=4, num_workers=0, pin_memory=False,  # (its own generator
                         sampler=SequentialSampler(range(12)), train=True, seed=3,     # for the base seed)
                         generator=torch.Generator())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = (torch.rand(2), np.random.rand(), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    list(loader)
    after = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]


@pytest.mark.parametrize("size,world", [(10, 3), (2, 3), (7, 1)])
def test_shards_cover_every_item_once(size, world):
    shards = [list(ShardSampler(size, r, world)) for r in range(world)]
    assert sorted(sum(shards, [])) == list(range(size))
    assert [len(ShardSampler(size, r, world)) for r in range(world)] == [len(s) for s in shards]
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(size, world, world)


class BatchFetching(RandomItems):
    def __getitems__(self, keys):
        raise AssertionError("the loader fetched a batch past the per-item seeding")


def test_a_batch_fetching_dataset_is_still_seeded_item_by_item():
    loader = make_loader(BatchFetching(), batch_size=4, num_workers=0, pin_memory=False,
                         sampler=SequentialSampler(range(12)), train=True, seed=3)
    assert torch.equal(epochs(loader, [0])[0], epochs(make_loader(RandomItems(), batch_size=4, num_workers=0,
                       pin_memory=False, sampler=SequentialSampler(range(12)), train=True, seed=3), [0])[0])


@pytest.mark.parametrize("workers", [0, 2])
def test_an_index_drawn_twice_in_an_epoch_gets_its_own_random_draws(workers):
    """The P x K sampler repeats the tracklets of an identity with fewer than K: each repeat
    gets its own crop, flip and erasing (a batch of two identical clips teaches nothing), and
    the repeats stay a function of (seed, epoch, index, occurrence), so resume stays exact."""
    order = [3, 5, 3, 3, 7, 5]

    def batches():
        loader = make_loader(RandomItems(), batch_size=3, num_workers=workers, pin_memory=False,
                             sampler=order, train=True, seed=3)
        return epochs(loader, [2])[0]
    first = batches()
    assert first[:, 0].tolist() == order
    for col in range(2, 5):
        draws = first[:, col].tolist()
        assert len(set(draws)) == len(order), (col, draws)      # repeats of 3 and 5 differ too
    assert torch.equal(first, batches())                        # still reproducible
    single = make_loader(RandomItems(), batch_size=1, num_workers=0, pin_memory=False, sampler=[3], train=True,
                         seed=3)
    assert torch.equal(epochs(single, [2])[0][0], first[0])     # a first draw is seeded as before


def test_a_tracklet_drawn_twice_in_a_batch_gets_other_frames(tiny_mars):
    """P x K repeats a tracklet when an identity has fewer than K: each repeat samples its own
    frames (torchreid draws them afresh too); they were identical before, whatever the crop."""
    from datasets import MARS
    from datasets.tracklet_dataset import TrackletDataset
    mars = MARS(tiny_mars[0])
    long = next(i for i, t in enumerate(mars.train) if len(t.frames) >= 8)
    for sample in ("random", "consecutive"):
        ds = TrackletDataset(mars.train, seq_len=4, sample=sample)
        loader = make_loader(ds, batch_size=6, num_workers=0, pin_memory=False,
                             sampler=[long] * 6, train=True, seed=3)
        clips = next(iter(loader))[0]
        distinct = {clips[k].flatten().numpy().tobytes() for k in range(6)}
        assert len(distinct) > 1, sample
