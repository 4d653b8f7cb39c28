"""Finetuning methods: each owns the training step of one recipe."""

from lightning_modules.methods.base import Batch, FinetuneMethod
from lightning_modules.methods.erm import ERM

__all__ = ["ERM", "Batch", "FinetuneMethod"]
