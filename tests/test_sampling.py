import numpy as np
import pytest
import torch

from datasets.frame_sampling import sample_all, sample_dense, sample_evenly, sample_random
from datasets.samplers import RandomIdentitySampler


def test_evenly():
    assert sample_evenly(10, 4).tolist() == [1, 3, 6, 8]
    assert sample_evenly(4, 4).tolist() == [0, 1, 2, 3]
    assert sample_evenly(3, 4).tolist() == [0, 1, 2, 0]


def test_random_one_frame_per_chunk():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_random(17, 4, rng)
        edges = np.floor(np.linspace(0, 17, 5)).astype(int)
        assert all(edges[k] <= idx[k] < edges[k + 1] for k in range(4))
    assert sample_random(2, 4, rng).tolist() == [0, 1, 0, 1]


def test_dense_and_all():
    assert sample_dense(8, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    d = sample_dense(10, 4)
    assert d.shape == (3, 4) and d[:2].ravel().tolist() == list(range(8)) and set(d[2]) == {8, 9}
    assert sample_all(5).tolist() == [[0, 1, 2, 3, 4]]


def test_identity_sampler_batches():
    pids = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    s = RandomIdentitySampler(pids, num_ids=4, num_instances=2, seed=0)
    batches = s.batches()
    assert len(batches) > 0 and len(s) == len(batches) * 8
    for b in batches:
        assert len(b) == 8
        ids, counts = np.unique(pids[b], return_counts=True)
        assert len(ids) == 4 and (counts == 2).all()
    s.set_epoch(1)
    assert s.batches() != batches  # reshuffled every epoch
    s.set_epoch(0)
    assert s.batches() == batches  # and reproducible


def test_distributed_sampler_shards():
    pids = np.repeat(np.arange(12), 4)
    full = RandomIdentitySampler(pids, 3, 2, seed=1).batches()
    ranks = [RandomIdentitySampler(pids, 3, 2, seed=1, num_replicas=2, rank=r).batches() for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(full) // 2
    assert ranks[0] == full[0::2][:len(ranks[0])] and ranks[1] == full[1::2][:len(ranks[1])]


def test_too_few_identities():
    with pytest.raises(ValueError, match="at least P=4"):
        RandomIdentitySampler([0, 0, 1, 1], num_ids=4, num_instances=2)


def test_consecutive_sampling_takes_adjacent_frames_from_a_random_start():
    """GLTR's training clips: seq_len adjacent frames; every start is possible; short tracklets loop."""
    from datasets.frame_sampling import sample_consecutive
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = sample_consecutive(20, 16, rng)
        assert idx.dtype == np.int64 and np.array_equal(np.diff(idx), np.ones(15)) and 0 <= idx[0] <= 4
        starts.add(int(idx[0]))
    assert starts == {0, 1, 2, 3, 4}
    assert sample_consecutive(16, 16, rng).tolist() == list(range(16))
    assert sample_consecutive(3, 5, rng).tolist() == [0, 1, 2, 0, 1]


def test_tracklet_dataset_consecutive_mode(tiny_mars):
    from datasets import MARS
    from datasets.tracklet_dataset import TrackletDataset
    mars = MARS(tiny_mars[0])
    ds = TrackletDataset(mars.train, seq_len=4, sample="consecutive")
    for i in range(len(ds)):
        idx = ds.indices(i)
        if len(mars.train[i].frames) >= 4:
            assert np.array_equal(np.diff(idx), np.ones(3))
    clip = ds[0][0]
    assert clip.dtype == torch.uint8 and clip.shape[:2] == (3, 4)
