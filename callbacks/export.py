"""Export the trained ViT as safetensors that timm's local-file loader reads back."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.evaluation import classifier
from callbacks.selection import Rule, monitored_checkpoint, select_weights
from datamodules.base import ImageClassificationDataModule
from lightning_modules.classifier import ViTClassifier
from robust_vit.adapters import has_adapters, merged_copy
from robust_vit.errors import ConfigError
from robust_vit.models import save_vit_weights
from robust_vit.ranges import check_ranges

VIT_PREFIX = "model.vit."


class ExportWeights(L.Callback):
    """At the end of fit, save the timm model's weights to ``path`` and into the run's log dir.

    ``select`` picks the weights by the rule ``--test_weights`` uses
    (:mod:`callbacks.selection`): the final ones, or the checkpoint of the best monitored value
    among the validations that ran. The export's metadata names the rule, step and checkpoint.
    Adapters (SAFER's LoRA/DoRA) are merged into their layers, so the file holds plain timm
    weights.
    The file loads with
    ``model.weights: <path>`` through
    ``timm.create_model(..., pretrained_cfg_overlay=dict(file=...))``, the path a user with real
    timm weights takes.

    Args:
        path: where to write the ``.safetensors`` file.
        overwrite: replace an existing file at ``path`` (otherwise the run refuses to start).
        select: ``last`` (the weights at the end of training) or ``best`` (the best evaluated
            checkpoint of the monitored ``ModelCheckpoint``).
        monitor: the metric ``best`` ranks by (None: the first monitored ``ModelCheckpoint``'s).
    """

    @check_ranges("ExportWeights")
    def __init__(
        self,
        path: str = "artifacts/weights.safetensors",
        overwrite: bool = False,
        select: Rule = "last",
        monitor: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.select, self.monitor = select, monitor

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse, before any training, to replace an earlier export unless asked to."""
        if stage == "fit" and self.path.exists() and not self.overwrite:
            raise ConfigError(
                "ExportWeights.path",
                f"{str(self.path)!r} already exists and would be overwritten at the end of fit. "
                "Move it, choose another path, or set `overwrite: true` on the ExportWeights "
                "callback (--trainer.callbacks.init_args.overwrite=true).",
            )
        if stage == "fit" and self.select == "best":
            monitored_checkpoint(trainer, "ExportWeights.select", self.monitor)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the weights with the hyperparameters needed to rebuild the model."""
        log_dir = Path(trainer.log_dir or ".")  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            self._export(trainer, classifier(pl_module), log_dir)

    def _export(self, trainer: L.Trainer, module: ViTClassifier, log_dir: Path) -> None:
        vit = module.model.vit
        adapters = module.method.adapter_config
        weights = select_weights(trainer, self.select, "ExportWeights.select", self.monitor)
        source = f"{weights.rule} weights, step {weights.global_step}"
        if weights.rule == "best" and weights.checkpoint:
            state = torch.load(weights.checkpoint, map_location="cpu", weights_only=True)[
                "state_dict"
            ]
            vit = merged_copy(
                vit,
                {k[len(VIT_PREFIX) :]: v for k, v in state.items() if k.startswith(VIT_PREFIX)},
                adapters,
            )
            source += f" ({weights.monitor} {weights.value:.4g}, {weights.checkpoint})"
        elif has_adapters(vit):
            vit = merged_copy(vit)
        if adapters is not None:
            source += f", {adapters.kind} adapters merged"
        hp = module.hparams
        metadata = {
            k: hp.get(k)
            for k in (
                "model_name",
                "num_classes",
                "img_size",
                "in_chans",
                "patch_size",
                "model_kwargs",
            )
        }
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(datamodule, ImageClassificationDataModule):
            metadata.update(datamodule.geometry())
        metadata.update(
            mean=module.model.mean.flatten().tolist(),
            std=module.model.std.flatten().tolist(),
            source=source,
        )
        for target in (self.path, log_dir / self.path.name):
            save_vit_weights(vit, target, metadata)
        rank_zero_info(f"Exported the {source} to {self.path}")
