"""A callback that scores every candidate layer's sharpness and logs a table and a bar chart."""

from __future__ import annotations

from functools import partial
from typing import Literal, cast

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import Dataset

from callbacks.results import record_path
from lightning_modules.layer_logging import log_layer_scores
from robust_vit.attacks.pgd import Norm, pgd
from robust_vit.layers import Granularity, candidate_layers
from robust_vit.ranges import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    check_ranges,
)
from robust_vit.records import update_record
from robust_vit.sharpness import Radius, ScoreVariant, fixed_batches, layer_sharpness
from robust_vit.threat import UnitPixelRadius

FIELD = "trainer.callbacks.LayerSharpness"


class LayerSharpness(L.Callback):
    """Score layer sharpness every ``every_n_epochs`` training epochs, or once in ``validate``.

    Uses :func:`robust_vit.sharpness.layer_sharpness` (the function SAFER selects with) on a
    fixed subset of the training set (of the validation set in a stand-alone ``validate`` run).
    Logs ``sharpness/<layer>`` scalars, a table and a bar chart, and the ``sharpness`` section
    of the run's result record.

    Args:
        every_n_epochs: score after every n-th training epoch.
        granularity: ``linear`` layers or whole ``block``s.
        rho: radius of the per-layer perturbation.
        radius: ``absolute`` or ``relative`` (rho * ||w_l||).
        variant: ``one_step``, ``first_order`` or ``multi_step``.
        ascent_steps: steps of ``multi_step``.
        num_batches: batches in the fixed scoring subset.
        batch_size: their size.
        seed: picks the subset.
        eps: PGD radius of the scoring inputs, ``8/255`` or a number (0: clean inputs).
        alpha: PGD step size, ``2/255`` or a number.
        steps: PGD steps.
        norm: PGD threat model.
    """

    @check_ranges(FIELD)
    def __init__(
        self,
        every_n_epochs: PositiveInt = 1,
        granularity: Literal["linear", "block"] = "linear",
        rho: NonNegativeFloat = 0.05,
        radius: Literal["absolute", "relative"] = "absolute",
        variant: Literal["one_step", "first_order", "multi_step"] = "one_step",
        ascent_steps: PositiveInt = 3,
        num_batches: PositiveInt = 2,
        batch_size: PositiveInt = 64,
        seed: int = 0,
        eps: UnitPixelRadius = 0.0,
        alpha: UnitPixelRadius = 2 / 255,
        steps: NonNegativeInt = 10,
        norm: Literal["linf", "l2"] = "linf",
    ) -> None:
        self.every_n_epochs, self.granularity = every_n_epochs, Granularity(granularity)
        self.rho, self.radius = rho, Radius(radius)
        self.variant, self.ascent_steps = ScoreVariant(variant), ascent_steps
        self.num_batches, self.batch_size, self.seed = num_batches, batch_size, seed
        self.eps, self.alpha, self.steps, self.norm = eps, alpha, steps, Norm(norm)

    def score(self, pl_module: L.LightningModule, dataset: Dataset) -> dict[str, float]:
        """Scores of every candidate layer of ``pl_module.model`` on the fixed subset."""
        model = cast(nn.Module, pl_module.model)
        batches = [
            (x.to(pl_module.device), y.to(pl_module.device))
            for x, y in fixed_batches(dataset, self.num_batches, self.batch_size, self.seed)
        ]
        attack = None
        if self.eps > 0:
            attack = partial(pgd, eps=self.eps, alpha=self.alpha, steps=self.steps, norm=self.norm)
        return layer_sharpness(
            model,
            candidate_layers(model, self.granularity),
            batches,
            rho=self.rho,
            radius=self.radius,
            variant=self.variant,
            ascent_steps=self.ascent_steps,
            attack=attack,
        )

    def _run(
        self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, epoch: int
    ) -> None:
        """Score on every rank (same fixed batches, same weights), write on rank zero."""
        with torch.inference_mode(False), torch.enable_grad():
            scores = self.score(pl_module, dataset)
        ranked = sorted(scores, key=scores.__getitem__, reverse=True)
        log_layer_scores(trainer, scores, ranked[:1], "sharpness", epoch)
        record = record_path(trainer)
        if not trainer.is_global_zero:
            return
        metrics = {f"sharpness/{name}": value for name, value in scores.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        update_record(
            record,
            "sharpness",
            {
                f"epoch_{epoch}": {
                    "scores": scores,
                    "ranked": ranked,
                    "rho": self.rho,
                    "variant": self.variant.value,
                    "radius": self.radius.value,
                }
            },
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Score after every ``every_n_epochs``-th epoch, on the training set."""
        loader = trainer.train_dataloader
        if loader is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._run(trainer, pl_module, loader.dataset, trainer.current_epoch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """In a stand-alone ``validate`` run, score once on the validation set."""
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, list) else loaders
            if loader is None:
                return
            self._run(trainer, pl_module, loader.dataset, trainer.current_epoch)
