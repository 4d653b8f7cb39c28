"""Finetuning methods: each owns the training step of one recipe."""

from lightning_modules.methods.adversarial import AdversarialMethod
from lightning_modules.methods.anf import ANF
from lightning_modules.methods.base import Batch, FinetuneMethod
from lightning_modules.methods.composite import Composite
from lightning_modules.methods.erm import ERM
from lightning_modules.methods.gaussian_noise import GaussianNoise
from lightning_modules.methods.linear_probe import LinearProbe
from lightning_modules.methods.pgd_at import PGDAT
from lightning_modules.methods.safer import SAFER
from lightning_modules.methods.trades import TRADES

__all__ = [
    "ANF",
    "ERM",
    "PGDAT",
    "SAFER",
    "TRADES",
    "AdversarialMethod",
    "Batch",
    "Composite",
    "FinetuneMethod",
    "GaussianNoise",
    "LinearProbe",
]
