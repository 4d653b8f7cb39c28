"""Madry et al. (2018) adversarial training: cross-entropy on PGD examples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.methods.adversarial import FIELD, AdversarialMethod
from lightning_modules.methods.base import Batch
from robust_vit.errors import ConfigError

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


class PGDAT(AdversarialMethod):
    """PGD-AT: CE(f(x_adv), y) (+ ``clean_weight`` * CE(f(x), y)).

    Args:
        norm: threat model, ``linf`` or ``l2`` (pixel units).
        eps: attack radius (default 8/255).
        alpha: step size (default 2/255).
        steps: PGD steps (default 10).
        random_init: start from a uniform random point of the ball.
        eps_warmup_epochs: ramp eps linearly from 0 over this many epochs (0: off).
        attack_eval_mode: run the attack with the model in eval mode.
        clean_weight: weight of an added clean cross-entropy term (0: pure Madry AT).
    """

    def __init__(
        self,
        norm: Literal["linf", "l2"] = "linf",
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_init: bool = True,
        eps_warmup_epochs: float = 0.0,
        attack_eval_mode: bool = True,
        clean_weight: float = 0.0,
    ) -> None:
        super().__init__(norm, eps, alpha, steps, random_init, eps_warmup_epochs, attack_eval_mode)
        if clean_weight < 0:
            raise ConfigError(f"{FIELD}.clean_weight", f"must be >= 0, got {clean_weight}.")
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
        return {"loss": loss, "logits": logits, "adv_loss": adv_loss.detach(),
                "eps": torch.tensor(self.eps * self.eps_scale(module))}
