"""Adversarial attacks as pure functions over a model that takes images in [0, 1]."""

from robust_vit.attacks.pgd import Norm, eval_mode, pgd, project

__all__ = ["Norm", "eval_mode", "pgd", "project"]
