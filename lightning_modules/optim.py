"""Parameter groups for the optimizers that the module and the methods build."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from torch import nn


def weight_decay_groups(
    model: nn.Module, names: Container[str] | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters split so that biases, norms and tokens get no weight decay.

    Args:
        model: the model whose parameters are grouped.
        names: keep only these parameter names (None keeps every trainable parameter).
    """
    skip = {
        f"{prefix}.{name}" if prefix else name
        for prefix, sub in model.named_modules()
        if hasattr(sub, "no_weight_decay")
        for name in sub.no_weight_decay()
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or (names is not None and name not in names):
            continue
        if param.ndim <= 1 or name in skip or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
