"""TRADES (Zhang et al. 2019): clean CE plus a KL term between adversarial and clean outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.methods.adversarial import FIELD, AdversarialMethod
from lightning_modules.methods.base import Batch
from robust_vit.attacks.core import LossFn, Norm, ce_loss, direction, loss_and_grad, project
from robust_vit.errors import ConfigError
from robust_vit.ranges import NonNegativeFloat, check_ranges

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


def kl_to_clean(logits_adv: Tensor, p_clean: Tensor) -> Tensor:
    """Per-example KL(p_clean || softmax(logits_adv)), the quantity the TRADES attack ascends."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), p_clean, reduction="none").sum(dim=1)


Start = Literal["reference", "uniform"]
REFERENCE_START_STD = 0.001


def reference_start(x: Tensor) -> Tensor:
    """TRADES' start ``x + 0.001 N(0, 1)``, drawn from the global CPU generator as PGD's starts."""
    noise = torch.randn(x.shape, device="cpu").to(x.device, x.dtype)
    return x + REFERENCE_START_STD * noise


def ascend_from(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    x_start: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: Norm,
    loss_fn: LossFn,
) -> Tensor:
    """Ascend ``loss_fn`` from ``x_start`` for ``steps`` steps as PGD does (signed or normalised).

    Each step is projected onto the ``eps`` ball around ``x`` and clamped to [0, 1]; the start is
    used as given (TRADES' code neither clamps nor projects its start).
    """
    x_adv = x_start.detach()
    for _ in range(steps):
        _, _, grad = loss_and_grad(model, x_adv, y, loss_fn)
        x_adv = (x + project(x_adv + alpha * direction(grad, norm) - x, eps, norm)).clamp(0, 1)
    return x_adv.detach()


class TRADES(AdversarialMethod):
    """CE(f(x), y) + beta * KL(f(x) || f(x_adv)), the attack maximising the KL term.

    The KL is TRADES' own (``kl_div(log_softmax(f(x_adv)), softmax(f(x)))``), with gradients
    through both outputs, as in the reference code.

    Args:
        beta: weight of the KL term (default 6).
        start: the inner attack's random start: ``reference`` (when unset), ``x + 0.001 N(0,
            1)`` as in Zhang et al.'s TRADES code; ``uniform``, uniform in the eps-ball as
            Madry et al.'s PGD (PGD-AT's and SAFER's start here). Both need ``random_init: true``
            (the default); with ``random_init: false`` the attack starts at ``x`` and setting
            ``start`` is a ConfigError.
        **attack: the attack options of
            :class:`~lightning_modules.methods.adversarial.AdversarialMethod` (norm, eps, alpha,
            steps, random_init, eps_warmup_epochs, attack_eval_mode).
    """

    @check_ranges(FIELD)
    def __init__(
        self,
        beta: NonNegativeFloat = 6.0,
        start: Start | None = None,
        **attack: Any,
    ) -> None:
        super().__init__(**attack)
        self.beta = beta
        self.start_option = start
        self.start: Start | None = (start or "reference") if self.random_init else None

    def check_fields(self) -> None:
        """A random start needs ``random_init``."""
        if self.start_option is not None and not self.random_init:
            raise ConfigError(
                "start",
                f"{self.start_option!r} is a random start but random_init is "
                "false: leave start unset, or set random_init: true.",
            )

    def attack(
        self, module: ViTClassifier, x: Tensor, target: Tensor, loss_fn: LossFn = ce_loss
    ) -> Tensor:
        """The inner attack from TRADES' start, or PGD's (uniform or at ``x``)."""
        if self.start != "reference":
            return super().attack(module, x, target, loss_fn)
        scale = self.eps_scale(module)
        with self.attack_context(module):
            return ascend_from(
                module.model,
                x,
                target,
                reference_start(x),
                eps=self.eps * scale,
                alpha=self.alpha * scale,
                steps=self.steps,
                norm=self.norm,
                loss_fn=loss_fn,
            )

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
