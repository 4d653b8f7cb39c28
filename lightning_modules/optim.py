"""Parameter groups for the optimizers that the module and the methods build."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from timm.optim import param_groups_weight_decay
from torch import nn


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names of what the model's submodules list in ``no_weight_decay()`` (tokens).

    timm asks the top module only; ours wraps the ViT (``model.vit``), so its list is prefixed.
    """
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, sub in model.named_modules()
        if hasattr(sub, "no_weight_decay")
        for name in sub.no_weight_decay()
    }


def weight_decay_groups(
    model: nn.Module, names: Container[str] | None = None
) -> list[dict[str, Any]]:
    """Trainable parameters as ``[decay, no_decay]``, split by timm's rule.

    :func:`timm.optim.param_groups_weight_decay` decides: biases, norms (every 1-d parameter) and
    the tokens of :func:`no_weight_decay_names` get none. Unlike timm's groups, the decay group
    keeps the optimizer factory's ``weight_decay``, and both groups are always there (empty when
    nothing is selected yet, as in SAFER before scoring), in the order checkpoints hold them.

    Args:
        model: the model whose parameters are grouped.
        names: keep only these parameter names (None keeps every trainable parameter).
    """
    timm_groups = param_groups_weight_decay(
        model, weight_decay=1.0, no_weight_decay_list=no_weight_decay_names(model)
    )
    exempt = {id(p) for group in timm_groups if not group["weight_decay"] for p in group["params"]}
    kept = [
        p
        for name, p in model.named_parameters()
        if p.requires_grad and (names is None or name in names)
    ]
    return [
        {"params": [p for p in kept if id(p) not in exempt]},
        {"params": [p for p in kept if id(p) in exempt], "weight_decay": 0.0},
    ]
