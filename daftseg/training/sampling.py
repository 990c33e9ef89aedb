"""Samplers that make every epoch reproducible: the order depends on (seed, epoch) only.

Each index is handed to the dataset together with its epoch, as ``(epoch, index)``, so the
dataset's per-sample RNG needs no state in the worker processes and a resumed run draws exactly
the samples the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from daftseg.data.npz_dataset import VALIDATION_EPOCH


class EpochSampler(Sampler[tuple[int, int]]):
    """This rank's share of a per-epoch shuffle, as ``DistributedSampler`` does it.

    The permutation comes from a generator seeded with ``seed + epoch``; it is padded by
    repeating its head so that every rank gets ``ceil(n / num_replicas)`` items (equal step
    counts keep DDP's collective calls in step), and rank r takes items r, r + R, r + 2R, ...
    """

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0, seed: int = 2024,
                 shuffle: bool = True) -> None:
        if n < 1:
            raise ValueError("the dataset is empty")
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 1
        self.per_rank = math.ceil(n / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.num_replicas
        order += (order * math.ceil(total / self.n))[: total - self.n]
        return order[self.rank: total: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.indices()])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler[tuple[int, int]]):
    """Validation: items r, r + R, ... in order, no padding (so every item counts once), fixed RNG stream."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.items = [(VALIDATION_EPOCH, i) for i in range(rank, n, num_replicas)]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
