"""Empirical risk minimisation: plain cross-entropy finetuning (and pretraining from scratch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from lightning_modules.methods.base import Batch, FinetuneMethod
from robust_vit.ranges import ClosedUnitInterval, check_ranges

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


class ERM(FinetuneMethod):
    """Cross-entropy on clean inputs.

    Args:
        label_smoothing: cross-entropy label smoothing (0 = none).
    """

    @check_ranges("model.method.init_args")
    def __init__(self, label_smoothing: ClosedUnitInterval = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """CE(f(x), y)."""
        x, y = batch
        logits = module(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return {"loss": loss, "logits": logits}
