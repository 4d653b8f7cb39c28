"""Gaussian noise augmentation: the plain, unlearned baseline beside ANF."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.methods.base import Batch, FinetuneMethod
from robust_vit.ranges import NonNegativeFloat, check_ranges

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


class GaussianNoise(FinetuneMethod):
    """``CE(f(x), y) + loss_weight * CE(f(clamp(x + sigma * n, 0, 1)), y)``, ``n ~ N(0, 1)``.

    Args:
        sigma: standard deviation of the pixel noise (images in [0, 1]).
        loss_weight: weight of the noisy cross-entropy.
        clamp: clamp the noisy images to [0, 1].
    """

    @check_ranges("model.method.init_args")
    def __init__(
        self, sigma: NonNegativeFloat = 0.1, loss_weight: NonNegativeFloat = 1.0, clamp: bool = True
    ) -> None:
        super().__init__()
        self.sigma, self.loss_weight, self.clamp = sigma, loss_weight, clamp

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """Clean plus noisy cross-entropy."""
        x, y = batch
        noisy_x = x + self.sigma * torch.randn_like(x)
        if self.clamp:
            noisy_x = noisy_x.clamp(0, 1)
        logits = module(x)
        loss = F.cross_entropy(logits, y) + self.loss_weight * F.cross_entropy(module(noisy_x), y)
        return {"loss": loss, "logits": logits}
