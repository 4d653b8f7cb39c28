"""Madry et al. (2018) adversarial training: cross-entropy on PGD examples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.methods.adversarial import FIELD, AdversarialMethod
from lightning_modules.methods.base import Batch
from robust_vit.ranges import NonNegativeFloat, check_ranges

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


class PGDAT(AdversarialMethod):
    """PGD-AT: CE(f(x_adv), y) (+ ``clean_weight`` * CE(f(x), y)).

    Args:
        clean_weight: weight of an added clean cross-entropy term (0: pure Madry AT).
        **attack: the attack options of
            :class:`~lightning_modules.methods.adversarial.AdversarialMethod` (norm, eps, alpha,
            steps, random_init, eps_warmup_epochs, attack_eval_mode).
    """

    @check_ranges(FIELD)
    def __init__(
        self,
        clean_weight: NonNegativeFloat = 0.0,
        **attack: Any,
    ) -> None:
        super().__init__(**attack)
        self.clean_weight = clean_weight

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """CE on PGD examples made at the current weights."""
        x, y = batch
        x_adv = self.attack(module, x, y)
        adv_loss = F.cross_entropy(module(x_adv), y)
        if self.clean_weight > 0:
            logits = module(x)
            loss = adv_loss + self.clean_weight * F.cross_entropy(logits, y)
        else:
            with torch.no_grad():
                logits = module(x)
            loss = adv_loss
        return {
            "loss": loss,
            "logits": logits,
            "adv_loss": adv_loss.detach(),
            "eps": torch.tensor(self.eps * self.eps_scale(module)),
        }
