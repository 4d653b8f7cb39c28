"""Robust accuracy during fit on fixed validation and training examples: robust overfitting."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import lightning as L
from torch import Tensor
from torch.utils.data import Dataset

from callbacks.adversarial import CountKey, add
from callbacks.evaluation import (
    StagedEvaluation,
    eval_dataset,
    proportion,
    rank_shard,
    reduce_counts,
)
from callbacks.results import record_path
from lightning_modules.logger_media import log_png
from robust_vit.attacks import CLEAN, PGD, WORST, Attack, run_suite
from robust_vit.errors import ConfigError
from robust_vit.plots import robust_overfitting
from robust_vit.ranges import NonNegativeInt, PositiveInt, check_ranges
from robust_vit.records import update_record

SECTION = "robust_validation"
SPLITS = ("val", "train")
MONITORS = ("val/robust_acc", "train/robust_acc")
SIZE_OPTION = {"val": "num_examples", "train": "train_examples"}


def default_attack() -> Attack:
    """PGD-10 at L-inf 8/255 with step 2/255 (Rice et al. 2020's validation attack)."""
    return PGD(eps=8 / 255, steps=10, rel_step=0.25)


class RobustValidation(StagedEvaluation):
    """Robust accuracy on fixed validation and training examples every ``every_n_epochs`` epochs.

    At the end of every due validation of fit (not the sanity check), ``attack`` runs on the first
    ``num_examples`` validation examples and the first ``train_examples`` training examples (the
    training split without augmentation). Each rank attacks its share with per-example seeds and
    the counts are summed over ranks. An example counts as robust when it is correct clean and
    after the attack. Logged as ``val/robust_acc`` and ``train/robust_acc`` on every rank, so
    either can be the monitor of a ``ModelCheckpoint`` or of ``EarlyStopping`` (Rice et al.
    2020's remedy for robust overfitting). Each evaluation adds a point (epoch, step, clean and
    robust accuracy of both subsets with 95% intervals) to the record's ``robust_validation``
    curve; the curve is kept in checkpoints and drawn, train against validation, as
    ``<log_dir>/robust_validation.png`` (the image ``fit/robust_validation/plot``). (Validation
    in fit runs under ``no_grad``, never ``inference_mode``, and the attack turns gradients on, so
    it needs no trainer setting.)

    Args:
        attack: the attack (default PGD-10 at L-inf 8/255, step 2/255).
        num_examples: validation examples attacked.
        train_examples: training examples attacked (0: no training curve).
        seed: seeds each example's random start (with its dataset index).
        every_n_epochs: evaluate every this many epochs.
        batch_size: examples attacked at once per rank.
    """

    @check_ranges("robust_validation")
    def __init__(
        self,
        attack: Attack | None = None,
        num_examples: PositiveInt = 500,
        train_examples: NonNegativeInt = 500,
        seed: int = 0,
        every_n_epochs: PositiveInt = 1,
        batch_size: PositiveInt = 256,
    ) -> None:
        self.attack = attack if attack is not None else default_attack()
        self.num_examples, self.train_examples = num_examples, train_examples
        self.seed, self.every_n_epochs, self.batch_size = seed, every_n_epochs, batch_size
        self.stages = ["fit"]
        self.curve: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse a checkpoint that would look for the robust accuracy in epochs without it."""
        for callback in trainer.checkpoint_callbacks:
            every = getattr(callback, "_every_n_epochs", self.every_n_epochs)
            monitor = getattr(callback, "monitor", None)
            if monitor in MONITORS and every != self.every_n_epochs:
                raise ConfigError(
                    "robust_validation.every_n_epochs",
                    f"is {self.every_n_epochs} but the ModelCheckpoint monitoring "
                    f"{monitor} checks every {every} epochs, and would find no value in "
                    "the others: give both the same every_n_epochs.",
                )

    def state_dict(self) -> dict[str, Any]:
        """The curve so far, so that a resumed fit continues it."""
        return {"curve": self.curve}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the checkpoint's curve."""
        self.curve = list(state_dict.get("curve", []))

    def _score(
        self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, num_examples: int
    ) -> dict[str, Any]:
        loader, n = rank_shard(dataset, num_examples, trainer, self.batch_size)
        counts: dict[CountKey, Tensor] = {}
        for x, y, index in loader:
            x, y = x.to(pl_module.device), y.to(pl_module.device)
            flags = run_suite(pl_module, x, y, [self.attack], index + self.seed * 2**31)
            add(counts, (CLEAN,), flags[CLEAN])
            add(counts, (WORST,), flags[WORST])
        totals = reduce_counts(trainer, counts)
        return {"clean": proportion(totals[(CLEAN,)], n), "robust": proportion(totals[(WORST,)], n)}

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        """Attack both subsets, log their robust accuracy, add the point to the curve."""
        start = time.perf_counter()
        datasets = {
            "val": eval_dataset(trainer, "fit"),
            "train": getattr(getattr(trainer, "datamodule", None), "plain_train_set", None),
        }
        sizes = {"val": self.num_examples, "train": self.train_examples}
        point: dict[str, Any] = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        for split in SPLITS:
            if sizes[split] == 0:
                continue
            dataset = datasets[split]
            if dataset is None:
                fix = (
                    "set data.val_fraction > 0"
                    if split == "val"
                    else "set train_examples: 0 "
                    "or use a robust-vit datamodule (they keep plain_train_set)"
                )
                raise ConfigError(
                    f"robust_validation.{SIZE_OPTION[split]}",
                    f"needs a {split} split, and there is none: {fix}.",
                )
            point[split] = self._score(trainer, pl_module, dataset, sizes[split])
            pl_module.log(f"{split}/robust_acc", point[split]["robust"]["acc"])
        point["seconds"] = round(time.perf_counter() - start, 2)
        self.curve.append(point)
        path = record_path(trainer)
        if trainer.is_global_zero:
            update_record(
                path,
                SECTION,
                {
                    "attack": self.attack.name,
                    "eps": self.attack.eps,
                    "norm": self.attack.norm,
                    "seed": self.seed,
                    "curve": self.curve,
                },
            )
        log_png(
            trainer,
            f"{SECTION}.png",
            f"fit/{SECTION}/plot",
            partial(
                robust_overfitting,
                self.curve,
                title=f"{self.attack.name}: robust accuracy, train vs validation",
            ),
        )
        return point
