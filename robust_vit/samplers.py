"""Training batches fixed by (seed, epoch) alone, so that a run can resume mid-epoch exactly.

The order of an epoch comes from a :class:`~torch.utils.data.DistributedSampler` (seed + epoch,
each rank its share) and each example's augmentation from its own seed, drawn from
``(seed, epoch, index)``; the global RNG's state is saved and put back around it. Nothing
depends on how many batches were drawn before (prefetching, loader workers, a restart), and the
training process's global RNG is left to the training step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

MASK = 2**63 - 1


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed per (run seed, epoch, example) that differs whenever one of them does."""
    return (
        seed * 6364136223846793005 + epoch * 1442695040888963407 + index * 2862933555777941757 + 1
    ) & MASK


class SeededItems(Dataset):
    """``dataset[index]`` for the key ``(index, epoch)``, its randomness seeded by the pair."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        """A plain index (a scoring subset, say) is served unseeded, from the global RNG."""
        if isinstance(key, int):
            return self.dataset[key]
        index, epoch = key
        rng = torch.default_generator  # CPU transforms draw from it; torch.manual_seed is slow
        saved = rng.get_state()
        rng.manual_seed(item_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            rng.set_state(saved)


class ResumableSampler(DistributedSampler):
    """This rank's shuffled share of each epoch as ``(index, epoch)`` keys for :class:`SeededItems`.

    Args:
        dataset: the training set.
        num_replicas: number of ranks.
        rank: this rank.
        seed: run seed; with the epoch (``set_epoch``) it fixes the order.
        resume_offset: called when the first pass starts (lazily: after Lightning restored a
            checkpoint), it returns how many of the epoch's keys were already trained.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int,
        rank: int,
        seed: int,
        resume_offset: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.resume_offset = resume_offset

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """The epoch's keys; the first pass skips those the resumed epoch already trained."""
        start, offset, self.resume_offset = 0, self.resume_offset, None
        if offset is not None:
            start = offset()
        for position, index in enumerate(super().__iter__()):
            if position >= start:
                yield index, self.epoch


class RoundSampler(Sampler):
    """A synthesis round's endless stream of this rank's keys, fixed by ``(seed, round)`` alone.

    Each pass over the dataset is a fresh permutation drawn from ``(seed, round, pass)``, the same
    on every rank; a rank takes every ``num_replicas``-th key of it. Keys are ``(index, -1 -
    round)`` for :class:`SeededItems` (augmentation seeded apart from every training epoch) and
    plain indices for any other dataset. Nothing is drawn from the global RNG, so a synthesis
    changes neither the training order nor the training process's random state.

    Args:
        dataset: the training set the synthesis draws from.
        seed: the method's seed.
        round_index: the synthesis round.
        num_replicas: number of ranks.
        rank: this rank.
    """

    def __init__(
        self, dataset: Dataset, seed: int, round_index: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        self.size = len(dataset)  # type: ignore[arg-type]
        self.keyed = isinstance(dataset, SeededItems)
        self.seed, self.round_index = seed, round_index
        self.num_replicas, self.rank = num_replicas, rank

    def __iter__(self) -> Iterator[tuple[int, int] | int]:
        """Keys of pass after pass, each pass a new permutation."""
        for pass_index in itertools.count():
            generator = torch.Generator().manual_seed(
                item_seed(self.seed, self.round_index, pass_index)
            )
            order = torch.randperm(self.size, generator=generator)
            for index in order[self.rank :: self.num_replicas].tolist():
                yield (index, -1 - self.round_index) if self.keyed else index
