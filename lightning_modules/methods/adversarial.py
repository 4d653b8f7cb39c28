"""Shared attack options of the adversarial-training methods (PGD-AT, TRADES, SAFER)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal

from torch import Tensor

from lightning_modules.methods.base import FinetuneMethod
from robust_vit.attacks.pgd import LossFn, Norm, ce_loss, eval_mode, pgd
from robust_vit.ranges import NonNegativeFloat, NonNegativeInt, check_ranges
from robust_vit.threat import UnitPixelRadius

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier

FIELD = "model.method.init_args"


class AdversarialMethod(FinetuneMethod):
    """Typed PGD options and the attack the training step calls.

    Args:
        norm: threat model, ``linf`` or ``l2``; epsilons are in pixel units (inputs in [0, 1]).
        eps: attack radius, ``8/255`` or a number (CIFAR-style default 8/255).
        alpha: step size, ``2/255`` or a number (default 2/255).
        steps: PGD steps (default 10).
        random_init: start from a uniform random point of the ball.
        eps_warmup_epochs: ramp eps (and alpha) linearly from 0 over this many epochs (0: off).
        attack_eval_mode: run the attack with the model in eval mode (dropout off).
    """

    @check_ranges(FIELD)
    def __init__(
        self,
        norm: Literal["linf", "l2"] = "linf",
        eps: UnitPixelRadius = 8 / 255,
        alpha: UnitPixelRadius = 2 / 255,
        steps: NonNegativeInt = 10,
        random_init: bool = True,
        eps_warmup_epochs: NonNegativeFloat = 0.0,
        attack_eval_mode: bool = True,
    ) -> None:
        super().__init__()
        self.norm = Norm(norm)
        self.eps, self.alpha, self.steps = eps, alpha, steps
        self.random_init = random_init
        self.eps_warmup_epochs = eps_warmup_epochs
        self.attack_eval_mode = attack_eval_mode

    def eps_scale(self, module: ViTClassifier) -> float:
        """The warm-up factor in [0, 1] at the current optimizer step."""
        trainer = module._trainer
        if self.eps_warmup_epochs <= 0 or trainer is None:
            return 1.0
        warmup_steps = self.eps_warmup_epochs * max(1, int(trainer.num_training_batches))
        return min(1.0, (trainer.global_step + 1) / warmup_steps)

    def attack_context(self, module: ViTClassifier) -> AbstractContextManager:
        """Eval mode for the attack when ``attack_eval_mode`` is set."""
        return eval_mode(module.model) if self.attack_eval_mode else nullcontext()

    def attack(
        self, module: ViTClassifier, x: Tensor, target: Tensor, loss_fn: LossFn = ce_loss
    ) -> Tensor:
        """PGD examples for ``x`` against the current weights, ascending ``loss_fn``."""
        scale = self.eps_scale(module)
        with self.attack_context(module):
            return pgd(
                module.model,
                x,
                target,
                eps=self.eps * scale,
                alpha=self.alpha * scale,
                steps=self.steps,
                norm=self.norm,
                random_init=self.random_init,
                loss_fn=loss_fn,
            )
