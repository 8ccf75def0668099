"""Each epoch's balanced draw, made once and split between the ranks of data-parallel training.

An epoch is ``share * world`` draws, with replacement, from the square-root balanced weights of
:func:`inspector.data.dataset.balanced_sampler`. Every rank makes the same draw (its generator is seeded by the
training seed and the epoch, never by the rank) and trains on the positions ``rank, rank + world, ...`` of it, as
``torch.utils.data.DistributedSampler`` splits a permutation: the ranks' shares are disjoint and together are the
epoch's draw, the draw one process of the same seed would make. Drawing with replacement, an image can stand at two
positions of one epoch (rare classes do, by design), and so on two ranks, exactly as it would be seen twice by one
process. Until this sampler, each rank drew its own share with a seed of its own: the same distribution, but no
rank's epoch could be told apart from, or checked against, the others'.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from inspector.data.dataset import balanced_sampler
from inspector.data.layouts import Sample


def rank_share(n: int, world: int, batch_size: int) -> int:
    """Draws per rank and epoch: ``ceil(n / world)``, less the partial batch a DataLoader with ``drop_last`` would
    drop (a batch of one breaks BatchNorm) when there is more than one batch. What a rank is given is then what it
    trains on, and every rank runs the same number of steps (DDP's all-reduce waits for all of them)."""
    share = math.ceil(n / world)
    return share - share % batch_size if share > batch_size else share


class ShardedBalancedSampler(Sampler[int]):
    """Balanced draws of ``samples`` for one rank; call :meth:`set_epoch` before each epoch for a new draw."""

    def __init__(self, samples: list[Sample], seed: int, rank: int = 0, world: int = 1, batch_size: int = 1):
        super().__init__()
        self.weights = balanced_sampler(samples, seed).weights  # (n,) float64, per sample
        self.seed, self.rank, self.world = seed, rank, world
        self.share = rank_share(len(samples), world, batch_size)
        self.epoch = 0
        self.last: list[tuple[int, int]] = []  # the latest epoch's (position in its draw, sample index) pairs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_draw(self, epoch: int | None = None) -> torch.Tensor:
        """``(share * world,)`` sample indices: the whole epoch's draw, the same on every rank."""
        epoch = self.epoch if epoch is None else epoch
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, np.uint64)[0])
        generator = torch.Generator().manual_seed(seed)
        return torch.multinomial(self.weights, self.share * self.world, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        draw = self.epoch_draw().tolist()
        self.last = [(p, draw[p]) for p in range(self.rank, len(draw), self.world)]
        return iter([i for _, i in self.last])

    def __len__(self) -> int:
        return self.share
