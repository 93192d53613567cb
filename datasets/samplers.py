"""P x K identity samplers for metric learning (Hermans et al., "In Defense of the Triplet Loss",
2017): each batch holds P identities with K tracklets each."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Sampler


class RandomIdentitySampler(Sampler[int]):
    """Yields indices in batches of ``num_ids * num_instances`` (P x K).

    Every epoch each identity's tracklets are shuffled and cut into groups of K (identities with
    fewer than K tracklets are re-sampled with replacement, as torchreid); groups are then drawn P
    distinct identities at a time. The order depends only on ``(seed, epoch)``, so a resumed run
    sees the same batches. With ``num_replicas > 1`` the batches are dealt round-robin to ranks
    (whole P x K batches per rank) and every rank gets the same number.
    """

    def __init__(self, pids: Sequence[int], num_ids: int = 8, num_instances: int = 4, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        self.pids = np.asarray(pids)
        self.P, self.K = num_ids, num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.index_by_pid = defaultdict(list)
        for i, pid in enumerate(self.pids):
            self.index_by_pid[int(pid)].append(i)
        if len(self.index_by_pid) < self.P:
            raise ValueError(f"P x K sampler needs at least P={self.P} identities, the data has "
                             f"{len(self.index_by_pid)}")
        self._num_batches = len(self._batches())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = defaultdict(list)
        for pid, idx in self.index_by_pid.items():
            idx = np.array(idx)
            if len(idx) < self.K:
                idx = rng.choice(idx, size=self.K, replace=True)
            idx = rng.permutation(idx)
            groups[pid] = [idx[i:i + self.K].tolist() for i in range(0, len(idx) - self.K + 1, self.K)]
        batches = []
        available = [p for p in groups if groups[p]]
        while len(available) >= self.P:
            chosen = rng.choice(available, size=self.P, replace=False)
            batch = []
            for pid in chosen:
                batch.extend(groups[pid].pop(0))
            batches.append(batch)
            available = [p for p in available if groups[p]]
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank:usable:self.num_replicas]

    def batches(self) -> list[list[int]]:
        return self._batches()

    def __iter__(self):
        for batch in self._batches():
            yield from batch

    def __len__(self) -> int:
        return self._num_batches * self.P * self.K
