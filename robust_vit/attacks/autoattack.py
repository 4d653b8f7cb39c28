"""AutoAttack through its reference implementation (``pyautoattack``, the ``oracles`` extra).

Wrapped as an :class:`~robust_vit.attacks.classes.Attack`, so ``AdversarialEval`` runs it on each
rank's shard, re-scores what it returns and counts it in the per-example worst case.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Literal

import torch
from torch import Tensor, nn

from robust_vit.attacks.classes import Attack
from robust_vit.errors import ConfigError
from robust_vit.ranges import check_ranges
from robust_vit.threat import NormName, PixelRadius

Version = Literal["standard", "plus", "rand", "custom"]
REFERENCE_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
REFERENCE_NORMS = {"linf": "Linf", "l2": "L2"}


def load_reference() -> ModuleType:
    """The ``pyautoattack`` package, or a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module("pyautoattack")
    except ImportError as err:
        raise ConfigError(
            "attacks.AutoAttack",
            "needs the reference implementation "
            "`pyautoattack`; install it with `pip install robust-vit[oracles]`.",
        ) from err


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """Turn off parameter gradients for the block (FAB calls ``backward``), then restore them."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020) as run by the reference ``pyautoattack``.

    ``standard`` runs APGD-CE, APGD-T, FAB-T and Square on the examples still robust, as the
    reference does; ``rand``, for randomised defences, APGD-CE and APGD-DLR with EOT over 20
    draws. The reference seeds one stream per batch (not per example), so its flags can
    depend on how examples are batched and sharded; the caller's RNG state is restored after.

    Args:
        eps: radius of the threat model (pixel units).
        norm: ``linf`` or ``l2``.
        version: ``standard``, ``plus``, ``rand``, or ``custom`` (with ``attacks``).
        attacks: the reference's attack names to run in order (``custom`` only).
        seed: the reference's seed.
        name: label in tables (default ``autoattack-<version>_<norm>``).
    """

    @check_ranges("adversarial.attacks.AutoAttack")
    def __init__(
        self,
        eps: PixelRadius,
        norm: NormName = "linf",
        version: Version = "standard",
        attacks: list[str] | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__(eps, norm, name)
        load_reference()
        if (version == "custom") != bool(attacks):
            raise ConfigError(
                "attacks.AutoAttack.attacks",
                "give a non-empty list exactly when "
                f"version is 'custom' (version={version!r}, attacks={attacks}).",
            )
        unknown = sorted(set(attacks or ()) - set(REFERENCE_ATTACKS))
        if unknown:
            raise ConfigError(
                "attacks.AutoAttack.attacks",
                f"unknown {unknown}; choose from {list(REFERENCE_ATTACKS)}.",
            )
        self.version, self.attacks, self.seed = version, list(attacks or ()), seed

    @property
    def averages_randomness(self) -> bool:
        """``rand``: the reference's APGD-CE and APGD-DLR average 20 draws per step (EOT)."""
        return self.version == "rand"

    def default_name(self) -> str:
        """``autoattack-standard``, or ``autoattack-<attack>+...`` for ``custom``."""
        return "autoattack-" + ("+".join(self.attacks) if self.attacks else self.version)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, seeds: Tensor | None) -> Tensor:
        """The reference's adversarial examples for this batch (the input itself at eps 0)."""
        if self.eps == 0:
            return x.clone()
        reference = load_reference()
        adversary = reference.AutoAttack(
            model,
            attacks=self.attacks or None,
            device=x.device,
            eps=self.eps,
            norm=REFERENCE_NORMS[self.norm],
            seed=self.seed,
            version=self.version,
        )
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), frozen_parameters(model):
            x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.detach()
