"""Candidate layers of a timm ViT for layer-selective finetuning (SAFER)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from torch import nn

from robust_vit.errors import ConfigError

WEIGHT_MODULES = (nn.Linear, nn.Conv2d)


class Granularity(str, Enum):
    """What one candidate is: one weight-bearing module, or one whole transformer block."""

    LINEAR = "linear"
    BLOCK = "block"


@dataclass(frozen=True)
class Layer:
    """One candidate: a display name and the full names of its parameters in the root model.

    Attributes:
        name: the name inside the timm model (``blocks.3.attn.qkv``, ``head``).
        param_names: names in ``root.named_parameters()`` (weights and biases of its linears).
    """

    name: str
    param_names: tuple[str, ...]


def find_vit(model: nn.Module) -> tuple[str, nn.Module]:
    """The prefix and module of the timm ViT inside ``model`` (the first with ``blocks``)."""
    for name, sub in model.named_modules():
        if hasattr(sub, "blocks") and hasattr(sub, "patch_embed"):
            return (f"{name}." if name else ""), sub
    raise ConfigError(
        "model.model_name",
        f"{type(model).__name__} has no timm ViT (a module with `patch_embed` and `blocks`); "
        "layer-selective finetuning needs one.",
    )


def _weight_params(module: nn.Module, prefix: str) -> tuple[str, ...]:
    names = []
    for sub_name, sub in module.named_modules():
        if isinstance(sub, WEIGHT_MODULES):
            base = f"{prefix}.{sub_name}" if sub_name else prefix
            names += [f"{base}.{p}" for p, _ in sub.named_parameters(recurse=False)]
    return tuple(names)


def candidate_layers(model: nn.Module, granularity: Granularity | str = "linear") -> list[Layer]:
    """Every candidate layer of the ViT in ``model``, in forward order.

    ``linear``: each ``nn.Linear`` inside the blocks (qkv, proj, fc1, fc2), the patch-embedding
    projection and the head. ``block``: each whole block (the parameters of its linears), the
    patch-embedding projection and the head. Norms, tokens and position embeddings are never
    candidates.

    Args:
        model: a timm ViT or a module holding one (``NormalizedViT``).
        granularity: ``linear`` (default) or ``block``.
    """
    granularity = Granularity(granularity)
    prefix, vit = find_vit(model)
    units: list[tuple[str, nn.Module]] = []
    proj = getattr(vit.patch_embed, "proj", None)
    if isinstance(proj, WEIGHT_MODULES):
        units.append(("patch_embed.proj", proj))
    for block_name, block in vit.get_submodule("blocks").named_children():
        if granularity is Granularity.BLOCK:
            units.append((f"blocks.{block_name}", block))
            continue
        units += [
            (f"blocks.{block_name}.{name}", sub)
            for name, sub in block.named_modules()
            if isinstance(sub, nn.Linear)
        ]
    head = getattr(vit, "head", None)
    if isinstance(head, WEIGHT_MODULES):
        units.append(("head", head))
    layers = [Layer(name, _weight_params(module, prefix + name)) for name, module in units]
    return [layer for layer in layers if layer.param_names]


def layer_parameters(model: nn.Module, layers: list[Layer]) -> dict[str, nn.Parameter]:
    """The parameters of ``layers`` by full name, in the model's order."""
    wanted = {name for layer in layers for name in layer.param_names}
    return {name: p for name, p in model.named_parameters() if name in wanted}
