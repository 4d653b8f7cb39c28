"""Finetuning methods: each owns the training step of one recipe."""

from lightning_modules.methods.anf import ANF
from lightning_modules.methods.base import Batch, FinetuneMethod
from lightning_modules.methods.erm import ERM
from lightning_modules.methods.gaussian_noise import GaussianNoise

__all__ = ["ANF", "ERM", "Batch", "FinetuneMethod", "GaussianNoise"]
