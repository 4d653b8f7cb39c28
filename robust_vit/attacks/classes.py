"""Thin typed attack classes: a YAML ``class_path`` for each pure attack function.

Each call puts the model in eval mode (restoring the caller's mode after), runs the attack and
re-scores the returned examples, so the reported flags are those of the returned tensor.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from robust_vit.attacks.apgd import apgd
from robust_vit.attacks.core import eval_mode, is_correct
from robust_vit.attacks.fgsm import fgsm
from robust_vit.attacks.pgd import pgd
from robust_vit.errors import ConfigError
from robust_vit.ranges import NonNegativeInt, PositiveFloat, PositiveInt, check_ranges
from robust_vit.threat import NormName, PixelRadius


def check_eps(eps: float, norm: str, name: str) -> None:
    """Fail unless ``eps`` is a radius in pixel units: >= 0, and <= 1 under L-inf."""
    high = 1.0 if norm == "linf" else math.inf
    if not 0 <= eps <= high:
        raise ConfigError(
            "adversarial.attacks",
            f"{name} = {eps} is outside [0, {high}] for the {norm} threat model; set eps in pixel "
            "units of images in [0, 1] (e.g. 8/255 = 0.0314 under linf, 0.5 under l2).",
        )


@dataclass(frozen=True)
class AttackResult:
    """Adversarial examples and whether the model still classifies each one correctly."""

    x_adv: Tensor
    robust: Tensor


class Attack(ABC):
    """An evaluation attack at radius ``eps`` (pixel units) under ``norm``.

    Args:
        eps: radius of the threat model.
        norm: ``linf`` or ``l2``.
        name: label in tables and logged keys (default: derived from the settings).
        early_exit: stop attacking examples once misclassified (identical results, faster).
    """

    eot = 1  # forward and backward passes averaged per gradient (expectation over transformation)

    @check_ranges("adversarial.attacks")
    def __init__(
        self,
        eps: PixelRadius,
        norm: NormName = "linf",
        name: str | None = None,
        early_exit: bool = True,
    ) -> None:
        check_eps(eps, norm, f"{type(self).__name__}.eps")
        self.eps = eps
        self.norm = norm
        self._name = name
        self.early_exit = early_exit

    @property
    def name(self) -> str:
        """Label in tables and logged keys (``pgd20-eot20_linf`` with EOT)."""
        eot = f"-eot{self.eot}" if self.eot > 1 else ""
        return self._name or f"{self.default_name()}{eot}_{self.norm}"

    @property
    def averages_randomness(self) -> bool:
        """Whether the attack's gradients are expectations over a randomised model's draws."""
        return self.eot > 1

    @abstractmethod
    def default_name(self) -> str:
        """Short name of the attack family and settings (``pgd20``)."""

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None) -> Tensor:
        """The adversarial examples (the model is already in eval mode)."""

    def with_eps(self, eps: float) -> Attack:
        """A copy of this attack at another radius (step sizes are relative to ``eps``)."""
        check_eps(eps, self.norm, "epsilons")
        other = copy.copy(self)
        other.eps = eps
        return other

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None = None
    ) -> AttackResult:
        """Attack in eval mode, then re-score the returned examples."""
        with eval_mode(model):
            x_adv = self.perturb(model, x, y, seeds)
            return AttackResult(x_adv, is_correct(model, x_adv, y))


class FGSM(Attack):
    """FGSM (Goodfellow et al. 2015): one step of size ``eps``.

    Args:
        eps: radius of the threat model.
        norm: ``linf`` or ``l2``.
        name: label in tables.
        early_exit: skip the examples already misclassified.
        eot: gradients averaged (EOT, for a randomised model).
    """

    @check_ranges("adversarial.attacks.FGSM")
    def __init__(
        self,
        eps: PixelRadius,
        norm: NormName = "linf",
        name: str | None = None,
        early_exit: bool = True,
        eot: PositiveInt = 1,
    ) -> None:
        super().__init__(eps, norm, name, early_exit)
        self.eot = eot

    def default_name(self) -> str:
        """``fgsm``."""
        return "fgsm"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None) -> Tensor:
        """One signed (L-inf) or normalised (L2) gradient step."""
        return fgsm(
            model, x, y, eps=self.eps, norm=self.norm, early_exit=self.early_exit, eot=self.eot
        )


class PGD(Attack):
    """PGD (Madry et al. 2018) with random start and restarts.

    Args:
        eps: radius of the threat model.
        steps: ascent steps per restart.
        rel_step: step size as a fraction of ``eps`` (0.25: 2/255 at 8/255).
        restarts: random restarts for the examples still correct.
        random_init: start from a uniform point of the ball.
        norm: ``linf`` or ``l2``.
        name: label in tables.
        early_exit: stop attacking examples once misclassified.
        eot: gradients averaged per step (EOT, for a randomised model).
    """

    @check_ranges("adversarial.attacks.PGD")
    def __init__(
        self,
        eps: PixelRadius,
        steps: PositiveInt = 20,
        rel_step: PositiveFloat = 0.25,
        restarts: PositiveInt = 1,
        random_init: bool = True,
        norm: NormName = "linf",
        name: str | None = None,
        early_exit: bool = True,
        eot: PositiveInt = 1,
    ) -> None:
        super().__init__(eps, norm, name, early_exit)
        self.eot = eot
        self.steps, self.rel_step, self.restarts = steps, rel_step, restarts
        self.random_init = random_init

    def default_name(self) -> str:
        """``pgd<steps>``."""
        return f"pgd{self.steps}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None) -> Tensor:
        """First misclassified point of any restart, else the last iterate."""
        return pgd(
            model,
            x,
            y,
            eps=self.eps,
            alpha=self.rel_step * self.eps,
            steps=self.steps,
            norm=self.norm,
            random_init=self.random_init,
            restarts=self.restarts,
            early_exit=self.early_exit,
            seeds=seeds,
            eot=self.eot,
        )


class APGD(Attack):
    """APGD (Croce & Hein 2020) with the CE or DLR loss, untargeted or over the top classes.

    Args:
        eps: radius of the threat model.
        loss: ``ce`` or ``dlr``.
        steps: iterations per run.
        restarts: random restarts (per target when targeted).
        targets: top classes to target in turn (0: untargeted; AutoAttack's APGD-T uses 9).
        norm: ``linf`` or ``l2``.
        name: label in tables.
        early_exit: stop attacking examples once misclassified.
        eot: gradients averaged per iteration (EOT, for a randomised model; AutoAttack's
            ``rand`` version uses 20).
    """

    @check_ranges("adversarial.attacks.APGD")
    def __init__(
        self,
        eps: PixelRadius,
        loss: Literal["ce", "dlr"] = "ce",
        steps: PositiveInt = 100,
        restarts: PositiveInt = 1,
        targets: NonNegativeInt = 0,
        norm: NormName = "linf",
        name: str | None = None,
        early_exit: bool = True,
        eot: PositiveInt = 1,
    ) -> None:
        super().__init__(eps, norm, name, early_exit)
        self.eot = eot
        self.loss, self.steps, self.restarts, self.targets = loss, steps, restarts, targets

    def default_name(self) -> str:
        """``apgd-ce``, ``apgd-dlr``, ``apgd-t-dlr``."""
        return f"apgd-{'t-' if self.targets else ''}{self.loss}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None) -> Tensor:
        """First misclassified point, else the highest-loss point of the last run."""
        return apgd(
            model,
            x,
            y,
            eps=self.eps,
            steps=self.steps,
            norm=self.norm,
            loss=self.loss,
            restarts=self.restarts,
            targets=self.targets,
            early_exit=self.early_exit,
            seeds=seeds,
            eot=self.eot,
        )
