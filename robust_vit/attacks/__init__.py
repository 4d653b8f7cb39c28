"""Adversarial attacks as pure functions over a model that takes images in [0, 1].

Functions (``fgsm``, ``pgd``, ``apgd``) for use anywhere; thin classes (``FGSM``, ``PGD``,
``APGD``, and ``AutoAttack`` over the optional reference implementation) that re-score what they
return and give YAML a ``class_path``; ``run_suite`` for the per-example worst case over a suite.
"""

from robust_vit.attacks.apgd import apgd, dlr_loss
from robust_vit.attacks.autoattack import AutoAttack
from robust_vit.attacks.classes import APGD, FGSM, PGD, Attack, AttackResult
from robust_vit.attacks.core import Norm, ce_loss, eval_mode, is_correct, project
from robust_vit.attacks.fgsm import fgsm
from robust_vit.attacks.pgd import pgd
from robust_vit.attacks.sanity import (
    beaten_by_fgsm,
    masking_warnings,
    randomized_forward,
    zero_input_gradient,
)
from robust_vit.attacks.suite import (
    CLEAN,
    WORST,
    attack_suite,
    count_flags,
    run_suite,
    wilson_interval,
)

__all__ = [
    "APGD",
    "CLEAN",
    "FGSM",
    "PGD",
    "WORST",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "Norm",
    "apgd",
    "attack_suite",
    "beaten_by_fgsm",
    "ce_loss",
    "count_flags",
    "dlr_loss",
    "eval_mode",
    "fgsm",
    "is_correct",
    "masking_warnings",
    "pgd",
    "project",
    "randomized_forward",
    "run_suite",
    "wilson_interval",
    "zero_input_gradient",
]
