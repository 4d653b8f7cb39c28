"""The one LightningModule: a timm ViT, its metrics and optimizers, and an injected method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.methods import ERM, Batch, FinetuneMethod
from lightning_modules.optim import weight_decay_groups
from robust_vit.errors import ConfigError
from robust_vit.factory_checks import check_optimizer_factory, check_scheduler_factory
from robust_vit.models import NormalizedViT, create_vit, default_normalization
from robust_vit.ranges import (
    PositiveFloat,
    PositiveInt,
    RightOpenUnitInterval,
    check_ranges,
    fields_under,
)
from robust_vit.rng import capture_rng_states, restore_rng_states
from robust_vit.schedules import NeedsTotalSteps

__all__ = ["ViTClassifier", "default_optimizer", "weight_decay_groups"]


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """AdamW, lr 1e-3, weight decay 0.05: a common ViT finetuning default."""
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


class ViTClassifier(L.LightningModule):
    """Image classification with a timm ViT finetuned by a pluggable method.

    Inputs are images in [0, 1]; the normalisation lives inside the model, so every epsilon an
    attack or a method uses is in pixel units.

    Args:
        model_name: any timm ViT name (``vit_small_patch16_224``, ``deit_tiny_patch16_224``, ...).
        num_classes: classes of the head (linked from the datamodule).
        img_size: input side (linked from the datamodule).
        in_chans: input channels (linked from the datamodule).
        patch_size: override the model's patch size (None keeps it).
        pretrained: load timm's published weights (needs network access or a filled cache).
        weights: a local ``.safetensors``/``.pth`` file loaded through timm's own loader.
        drop_path_rate: stochastic depth rate.
        model_kwargs: further ``timm.create_model`` arguments (``embed_dim``, ``depth``, ...).
        mean: input normalisation mean (None: the model's pretrained-config mean).
        std: input normalisation std (None: the model's pretrained-config std).
        method: the finetuning method (default: :class:`~lightning_modules.methods.ERM`).
        optimizer: optimizer factory applied to the trainable parameters.
        lr_scheduler: scheduler factory (stepped every optimizer step); schedules that need the
            run's length get it from the trainer.
    """

    @check_ranges("model")
    def __init__(
        self,
        model_name: str = "vit_tiny_patch16_224",
        num_classes: PositiveInt = 1000,
        img_size: PositiveInt = 224,
        in_chans: PositiveInt = 3,
        patch_size: PositiveInt | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        drop_path_rate: RightOpenUnitInterval = 0.0,
        model_kwargs: dict[str, Any] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[PositiveFloat] | None = None,
        method: FinetuneMethod | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.method = method if method is not None else ERM()
        with fields_under("model.method.init_args"):
            self.method.check_fields()
        self.save_hyperparameters(ignore=["method", "optimizer", "lr_scheduler"])
        self.model = self.configure_model_from_hparams()
        check_optimizer_factory(optimizer, "model.optimizer")
        check_scheduler_factory(lr_scheduler, optimizer, "model.lr_scheduler")
        self.automatic_optimization = self.method.automatic_optimization
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def configure_model_from_hparams(self) -> NormalizedViT:
        """Build the normalised timm ViT described by the hyperparameters."""
        hp = self.hparams
        vit = create_vit(
            hp["model_name"],
            num_classes=hp["num_classes"],
            img_size=hp["img_size"],
            in_chans=hp["in_chans"],
            patch_size=hp["patch_size"],
            pretrained=hp["pretrained"],
            weights=hp["weights"],
            drop_path_rate=hp["drop_path_rate"],
            model_kwargs=hp["model_kwargs"],
        )
        in_chans = hp["in_chans"]
        default_mean, default_std = default_normalization(vit, in_chans)
        mean = tuple(hp["mean"]) if hp["mean"] is not None else default_mean
        std = tuple(hp["std"]) if hp["std"] is not None else default_std
        for field, values in (("model.mean", mean), ("model.std", std)):
            if len(values) != in_chans:
                raise ConfigError(field, f"has {len(values)} values for {in_chans} channels.")
        return NormalizedViT(vit, mean, std)

    @property
    def vit(self) -> nn.Module:
        """The wrapped timm model (expects normalised input)."""
        return self.model.vit

    def forward(self, x: Tensor) -> Tensor:
        """Logits for images in [0, 1]."""
        return self.model(x)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep every RNG state, so that a resumed run draws what the uninterrupted one would."""
        checkpoint["rng_states"] = capture_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Let the method prepare for the weights; restore the checkpoint's RNG states.

        Outside fit (a test or a validation of the weights) the training method's own state
        (ANF's noise, say) is left out, so a checkpoint tests under any method's config.
        """
        self.method.on_load_checkpoint(self, checkpoint)
        if self._trainer is not None and self.trainer.state.fn != TrainerFn.FITTING:
            own = self.state_dict()
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith("method.") and k not in own]:
                del state[key]
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])

    def on_fit_start(self) -> None:
        """Let the method check and prepare itself on the model's device."""
        self.method.on_fit_start(self)

    def on_train_epoch_start(self) -> None:
        """Let the method act at epoch boundaries (e.g. re-select its trainable layers)."""
        self.method.on_train_epoch_start(self)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training accuracy (updated every step, computed and logged once)."""
        if self.train_acc.update_called:
            self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_acc.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        """Delegate to the method, then log what it returns (accuracy: once per epoch)."""
        out = self.method.training_step(self, batch, batch_idx)
        self.train_acc.update(out["logits"].detach(), batch[1])
        self.log("train/loss", out["loss"].detach(), prog_bar=True)
        for name, value in out.items():
            if name not in ("loss", "logits"):
                self.log(f"train/{name}", value)
        return out["loss"] if self.automatic_optimization else None

    def _evaluate(self, batch: Batch, stage: str, metric: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        metric(logits, y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Clean validation loss and accuracy."""
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        """Clean test loss and accuracy."""
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Predicted class per image."""
        return self(batch[0]).argmax(dim=-1)

    def configure_optimizers(self) -> Any:
        """The optimizer the method builds (by default over all parameters), and the scheduler."""
        optimizer = self.method.configure_optimizer(self, self.optimizer_factory)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self._build_scheduler(optimizer)
        config = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _build_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        scheduler = self.scheduler_factory(optimizer)  # type: ignore[misc]
        if isinstance(scheduler, NeedsTotalSteps):
            scheduler.set_total_steps(int(self.trainer.estimated_stepping_batches))
        return scheduler

    def rebuild_optimizers(self) -> None:
        """Rebuild the optimizer mid-run (fresh state) after the method changed what it trains.

        The scheduler is rebuilt on the new optimizer and keeps its position and current
        learning rates.
        """
        optimizer = self.method.configure_optimizer(self, self.optimizer_factory)
        self.trainer.strategy.optimizers = [optimizer]
        for config in self.trainer.lr_scheduler_configs:
            old = config.scheduler
            scheduler = self._build_scheduler(optimizer)
            scheduler.load_state_dict(old.state_dict())
            for group, old_group in zip(
                optimizer.param_groups, old.optimizer.param_groups, strict=True
            ):
                group["lr"] = old_group["lr"]
            config.scheduler = scheduler
