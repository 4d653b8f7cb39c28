"""The LightningModule that wraps a timm ViT, and the finetuning methods plugged into it."""

from lightning_modules.classifier import ViTClassifier
from lightning_modules.methods import ERM, PGDAT, SAFER, TRADES, FinetuneMethod

__all__ = ["ERM", "PGDAT", "SAFER", "TRADES", "FinetuneMethod", "ViTClassifier"]
