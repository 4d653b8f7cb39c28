"""Linear probing: cross-entropy on the classifier head alone, the backbone frozen.

The features are computed without autograd, so a step costs a forward pass of the backbone and
the head's backward only; the optimizer holds the head's parameters alone, so nothing else moves
(``requires_grad`` is left as it is, as everywhere in the project). It is the ANF and SAFER
papers' starting point for a pretrained ViT on a new label set: a head fitted to frozen features,
exported as the weights every finetuning arm starts from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor
from torch.optim import Optimizer

from lightning_modules.methods.base import Batch
from lightning_modules.methods.erm import ERM
from lightning_modules.optim import weight_decay_groups
from robust_vit.errors import ConfigError

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier

HEAD = "vit.head."


class LinearProbe(ERM):
    """ERM's cross-entropy on the head alone, the backbone frozen (``label_smoothing`` as ERM's)."""

    def head_names(self, module: ViTClassifier) -> set[str]:
        """The classifier head's parameter names in ``module.model``."""
        names = {n for n, _ in module.model.named_parameters() if n.startswith(HEAD)}
        if not names:
            raise ConfigError(
                "model.num_classes",
                "the ViT has no classifier head to probe (num_classes 0?); give num_classes.",
            )
        return names

    def on_fit_start(self, module: ViTClassifier) -> None:
        """Fail before training when the model has no head."""
        self.head_names(module)

    def configure_optimizer(self, module: ViTClassifier, factory: OptimizerCallable) -> Optimizer:
        """The optimizer over the head alone."""
        return factory(weight_decay_groups(module.model, names=self.head_names(module)))

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """CE on the head's logits; the features carry no graph."""
        x, y = batch
        vit = cast(VisionTransformer, module.model.vit)
        with torch.no_grad():
            features = vit.forward_features(module.model.normalize(x))
        logits = vit.forward_head(features)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        return {"loss": loss, "logits": logits}
