"""A suite of attacks scored per example: each attack's flags, the worst case, Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robust_vit.attacks.classes import Attack
from robust_vit.attacks.core import eval_mode, is_correct

CLEAN, WORST = "clean", "worst_case"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default); (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def run_suite(
    model: nn.Module, x: Tensor, y: Tensor, attacks: Sequence[Attack], seeds: Tensor | None = None
) -> dict[str, Tensor]:
    """Per-example robustness flags: ``clean``, one entry per attack, and ``worst_case``.

    Every attack sees every example (its own accuracy is reported); an example is robust in the
    worst case only if it is correct on the clean input and survives every attack.
    """
    return attack_suite(model, x, y, attacks, seeds)[0]


def attack_suite(
    model: nn.Module, x: Tensor, y: Tensor, attacks: Sequence[Attack], seeds: Tensor | None = None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """:func:`run_suite`'s flags, and each attack's adversarial examples (by attack name).

    An attack's flag is the model's correctness on exactly the examples returned for it.
    """
    names = [a.name for a in attacks]
    if len(set(names)) != len(names) or {CLEAN, WORST} & set(names):
        raise ValueError(f"attack names must be unique and not {CLEAN}/{WORST}: {names}")
    with eval_mode(model):
        flags = {CLEAN: is_correct(model, x, y)}
    worst = flags[CLEAN].clone()
    examples = {}
    for attack in attacks:
        result = attack(model, x, y, seeds)
        flags[attack.name], examples[attack.name] = result.robust, result.x_adv.detach()
        worst &= flags[attack.name]
    flags[WORST] = worst
    return flags, examples


def count_flags(flags: dict[str, Tensor]) -> dict[str, int]:
    """How many examples each entry leaves robust."""
    return {name: int(torch.count_nonzero(f)) for name, f in flags.items()}
