"""Nullspace analysis after fit or in a stand-alone ``validate``: table, plot, record section."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info

from callbacks.evaluation import classifier
from callbacks.results import record_path
from robust_vit.nullspace_report import markdown_table, nullspace_report
from robust_vit.plots import plot_nullspace_report
from robust_vit.ranges import PositiveAtMost2, PositiveFloat, PositiveInt, check_ranges
from robust_vit.records import update_record, write_text_atomic


class NullspaceAnalysis(L.Callback):
    """Report the model's exact patch-embedding nullspace and its ANF noise.

    It runs at the end of fit, or once in a stand-alone ``robust-vit validate`` (the way to
    analyse an existing weights file or checkpoint). Writes ``nullspace.md`` and
    ``nullspace.png`` next to the run's record and merges the numbers into its ``nullspace``
    section.

    Args:
        num_images: validation images used (the first ones of the val loader).
        noise_scale: std of the exact-nullspace noise coefficients.
        eps: stop threshold of the ANF noise synthesis.
        max_steps: synthesis budget.
        noise_units: what ``init_lim`` and ``noise_lr`` are measured in (as ANF's option of
            that name): absolute, or the clean patch tokens' RMS.
        init_lim: the synthesis start's Uniform(-init_lim, init_lim) bound.
        noise_lr: the synthesis learning rate.
    """

    @check_ranges("trainer.callbacks.NullspaceAnalysis")
    def __init__(
        self,
        num_images: PositiveInt = 256,
        noise_scale: PositiveFloat = 1.0,
        eps: PositiveAtMost2 = 0.03,
        max_steps: PositiveInt = 100,
        noise_units: Literal["absolute", "token_rms"] = "absolute",
        init_lim: PositiveFloat = 3.0,
        noise_lr: PositiveFloat = 0.1,
    ) -> None:
        self.num_images, self.noise_scale = num_images, noise_scale
        self.eps, self.max_steps = eps, max_steps
        self.noise_units, self.init_lim, self.noise_lr = noise_units, init_lim, noise_lr

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Analyse the trained model."""
        self._run(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """In a stand-alone ``validate`` run (not the validation inside fit), analyse once."""
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self._run(trainer, pl_module)

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Run the analysis on validation images and write its outputs.

        Every rank runs it (the noise synthesis averages across ranks under DDP); rank zero
        writes the report of its own validation shard.
        """
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list) else loaders
        if loader is None:
            rank_zero_info("NullspaceAnalysis: no validation data, skipped.")
            return
        with torch.inference_mode(False), torch.enable_grad():
            images: list[torch.Tensor] = []
            for x, _ in loader:
                images.append(x)
                if sum(len(i) for i in images) >= self.num_images:
                    break
            x = torch.cat(images)[: self.num_images].to(pl_module.device)
            report = nullspace_report(
                classifier(pl_module).model,
                x,
                noise_scale=self.noise_scale,
                eps=self.eps,
                max_steps=self.max_steps,
                noise_units=self.noise_units,
                init_lim=self.init_lim,
                noise_lr=self.noise_lr,
            )
        path = record_path(trainer)
        if not trainer.is_global_zero:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path.parent / "nullspace.md", markdown_table(report))
        plot_nullspace_report(report, path.parent / "nullspace.png")
        update_record(path, "nullspace", report)
        rank_zero_info(markdown_table(report))
