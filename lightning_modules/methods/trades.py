"""TRADES (Zhang et al. 2019): clean CE plus a KL term between adversarial and clean outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.methods.adversarial import FIELD, AdversarialMethod
from lightning_modules.methods.base import Batch
from robust_vit.errors import ConfigError

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


def kl_to_clean(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """Per-example KL(p_clean || softmax(logits_adv)), the quantity the TRADES attack ascends."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction="none").sum(dim=1)


class TRADES(AdversarialMethod):
    """CE(f(x), y) + beta * KL(f(x) || f(x_adv)), the attack maximising the KL term.

    The KL is TRADES' own (``kl_div(log_softmax(f(x_adv)), softmax(f(x)))``), with gradients
    through both outputs, as in the reference code.

    Args:
        beta: weight of the KL term (default 6).
        **attack: the attack options of
            :class:`~lightning_modules.methods.adversarial.AdversarialMethod` (norm, eps, alpha,
            steps, random_init, eps_warmup_epochs, attack_eval_mode).
    """

    def __init__(
        self,
        beta: float = 6.0,
        **attack: Any,
    ) -> None:
        super().__init__(**attack)
        if beta < 0:
            raise ConfigError(f"{FIELD}.beta", f"must be >= 0, got {beta}.")
        self.beta = beta

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """Clean CE plus beta times the KL to the clean prediction on KL-maximising examples."""
        x, y = batch
        with self.attack_context(module), torch.no_grad():
            p_clean = F.softmax(module(x), dim=1)
        x_adv = self.attack(module, x, p_clean, loss_fn=kl_to_clean)
        logits = module(x)
        kl = kl_to_clean(module(x_adv), F.softmax(logits, dim=1)).mean()
        loss = F.cross_entropy(logits, y) + self.beta * kl
        return {"loss": loss, "logits": logits, "kl": kl.detach()}
