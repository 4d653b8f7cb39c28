"""The extension point of the framework: a finetuning method owns the training step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from lightning_modules.optim import weight_decay_groups
from robust_vit.adapters import AdapterConfig

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier

Batch = tuple[Tensor, Tensor]


def train_loader(module: ViTClassifier) -> DataLoader:
    """The trainer's training loader, which fit builds before the first training step."""
    loader = module.trainer.train_dataloader
    if loader is None:
        raise RuntimeError("the training loader was asked for before fit built it.")
    return loader


class FinetuneMethod(nn.Module, ABC):
    """A finetuning recipe plugged into :class:`~lightning_modules.classifier.ViTClassifier`.

    A method is an ``nn.Module`` so that its state (a noise tensor, a layer selection) follows the
    device and the checkpoint. It never subclasses the LightningModule: the module stays one
    class, and a YAML picks the method with ``model.method.class_path``.

    ``training_step`` returns a dict with ``loss`` (the value to minimise; ignored under manual
    optimisation, where the method steps the optimiser itself), ``logits`` (the clean-input logits,
    for the training accuracy) and any further scalars the module logs as ``train/<name>``.
    """

    automatic_optimization: ClassVar[bool] = True
    adapter_config: AdapterConfig | None = None
    """How this method adapts layers (LoRA/DoRA), so exports can rebuild and merge them."""

    def check_fields(self) -> None:
        """Refuse combinations of this method's options (none here).

        Each option alone is checked by its type (:mod:`robust_vit.ranges`); this is the one place
        for rules across options. It raises :class:`~robust_vit.errors.ConfigError` with the field
        relative to the method's ``init_args`` and runs after construction, or, when the CLI builds
        the method, from its owner (the classifier, a Composite, SAFER), which adds the real key.
        """

    def summary(self) -> dict[str, Any]:
        """What the run's record keeps of the method after fit (``fit.method``; none here)."""
        return {}

    def on_fit_start(self, module: ViTClassifier) -> None:
        """Called once before training, with the model on its device (e.g. to check it applies)."""

    def on_train_epoch_start(self, module: ViTClassifier) -> None:
        """Called at the start of every training epoch (the train dataloader is ready)."""

    def on_load_checkpoint(self, module: ViTClassifier, checkpoint: dict[str, Any]) -> None:
        """Called before a checkpoint's weights load (e.g. to rebuild modules they need)."""

    def configure_optimizer(self, module: ViTClassifier, factory: OptimizerCallable) -> Optimizer:
        """The optimizer over what this method trains (default: every trainable parameter).

        Called at setup, and again by ``module.rebuild_optimizers()`` when the method changes
        what it trains mid-run.
        """
        return factory(weight_decay_groups(module.model))

    @abstractmethod
    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """One training step on ``batch``; see the class docstring for the returned dict."""
