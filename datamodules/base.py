"""The base of every image-classification datamodule: split, seeded loaders, derived sizes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from robust_vit.errors import ConfigError
from robust_vit.ranges import AtLeast8, NonNegativeInt, PositiveInt, ZeroToHalf, check_ranges
from robust_vit.samplers import ResumableSampler, SeededItems


class ImageClassificationDataModule(L.LightningDataModule, ABC):
    """Train/val split of the training set (test stays test) and seeded, deterministic loaders.

    Training order and augmentation depend only on the run seed (kept in checkpoints as the
    datamodule's state), the epoch and the example (:mod:`robust_vit.samplers`), so a run resumed
    from a mid-epoch checkpoint trains on exactly the batches an uninterrupted run would have.

    Subclasses build the datasets; images come out as float tensors in [0, 1], shape
    ``(in_chans, img_size, img_size)``. ``num_classes``, ``img_size`` and ``in_chans`` are linked to
    the model by the CLI, so they are never typed twice.

    Args:
        batch_size: examples per batch on each device.
        num_workers: loader worker processes (0 keeps loading in the training process, best on
            small CPU machines).
        val_fraction: share of the training set held out for validation (0 disables validation).
        split_seed: seed of the train/val split, fixed so that every run sees the same split.
        img_size: side of the square images the model receives.
        in_chans: channels the model receives (grey images are repeated to fill them).
    """

    num_classes: int

    @check_ranges("data")
    def __init__(
        self,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 0,
        val_fraction: ZeroToHalf = 0.1,
        split_seed: int = 0,
        img_size: AtLeast8 = 32,
        in_chans: Literal[1, 3] = 3,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.img_size = img_size
        self.in_chans = in_chans
        self.train_set: Dataset | None = None
        self.plain_train_set: Dataset | None = None  # the training split without augmentation
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.data_seed: int | None = None

    def geometry(self) -> dict[str, Any]:
        """How images are fitted to the model's input (an evaluation of its weights repeats it)."""
        return {"img_size": self.img_size, "in_chans": self.in_chans}

    def state_dict(self) -> dict[str, Any]:
        """What checkpoints keep: the training order's seed, and the geometry for evaluation.

        The seed of the training order and augmentation is resumed; the image geometry is read
        by ``robust-vit evaluate``.
        """
        return {"data_seed": self.data_seed, **self.geometry()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume with the checkpoint's training order."""
        self.data_seed = state_dict.get("data_seed")

    @abstractmethod
    def build_train_set(self, augment: bool) -> Dataset:
        """The full training set (with augmentation when ``augment``)."""

    @abstractmethod
    def build_test_set(self) -> Dataset:
        """The held-out test set."""

    def setup(self, stage: str) -> None:
        """Build the datasets the stage needs and split validation off the training set."""
        if stage in ("fit", "validate") and self.train_set is None:
            train_full = self.build_train_set(augment=True)
            plain_full = self.build_train_set(augment=False)
            n = len(train_full)  # type: ignore[arg-type]
            n_val = round(n * self.val_fraction)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
            self.train_set = Subset(train_full, order[n_val:].tolist())
            self.plain_train_set = Subset(plain_full, order[n_val:].tolist())
            self.val_set = Subset(plain_full, order[:n_val].tolist()) if n_val else None
        if stage in ("fit", "validate"):
            self._check_split_sizes(stage)
        if stage in ("test", "predict") and self.test_set is None:
            self.test_set = self.build_test_set()

    def _check_split_sizes(self, stage: str) -> None:
        """Fail before any compute when fit would train, or validation would run, on nothing."""
        n_train = len(self.train_set)  # type: ignore[arg-type]
        world = self.trainer.world_size if self.trainer else 1
        if stage == "fit" and n_train < self.batch_size * world:
            raise ConfigError(
                "data.batch_size",
                f"{self.batch_size} per device x {world} device(s) is more than the {n_train} "
                "training examples, so fit would train on nothing (it keeps full batches only). "
                "Lower data.batch_size or train on more examples (data.limit_train).",
            )
        if self.val_set is None and (self.val_fraction > 0 or stage == "validate"):
            raise ConfigError(
                "data.val_fraction",
                f"{self.val_fraction} of {n_train} examples holds no validation example, so "
                f"{stage} would validate on nothing. Raise it (at most 0.5)"
                + (", or set 0 to train without validation." if stage == "fit" else "."),
            )

    def _loader(self, dataset: Dataset | None, **kwargs: Any) -> DataLoader:
        if dataset is None:
            raise RuntimeError("setup() must run before the loaders are requested.")
        # A generator of its own: iterating a loader never draws from the global RNG.
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(0),
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """This rank's shuffled training batches, fixed by the run seed and the epoch."""
        if self.data_seed is None:
            self.data_seed = torch.initial_seed() % 2**63
        if self.train_set is None:
            raise RuntimeError("setup() must run before the loaders are requested.")
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = ResumableSampler(
            self.train_set, world, rank, self.data_seed, resume_offset=self._trained_this_epoch
        )
        return self._loader(
            SeededItems(self.train_set, self.data_seed), sampler=sampler, drop_last=True
        )

    def _trained_this_epoch(self) -> int:
        """Examples of this rank's current epoch already trained, when fit resumes mid-epoch.

        Asked when the first training pass starts, after Lightning restored the loops' state.
        """
        trainer = self.trainer
        if trainer is None or not trainer.fit_loop.restarting:
            return 0
        loop: Any = trainer.fit_loop  # its progress trackers are typed as their base class
        epochs = loop.epoch_progress.total
        if epochs.processed != epochs.started - 1:  # the checkpoint is from an epoch's end
            return 0
        return loop.epoch_loop.batch_progress.current.processed * self.batch_size

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (none when ``val_fraction`` is 0)."""
        return self._loader(self.val_set) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """Prediction runs over the test set."""
        return self.test_dataloader()
