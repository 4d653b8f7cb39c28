"""Layer rollback: how much of a model's robust overfitting one layer carries (SAFER's premise).

Starting from overfit weights, one candidate layer at a time is put back to the reference
(early-stopped) weights and robust accuracy is measured again; the rise is that layer's gain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robust_vit.layers import Layer

Evaluate = Callable[[nn.Module], float]


def check_reference(model: nn.Module, reference_state: Mapping[str, Tensor], layer: Layer) -> None:
    """Fail, naming the tensor, unless ``reference_state`` holds every parameter of ``layer``.

    Args:
        model: the model whose parameter names ``layer`` lists.
        reference_state: the reference weights, keyed as ``model.named_parameters()``.
        layer: the candidate layer to roll back.
    """
    named = dict(model.named_parameters())
    for name in layer.param_names:
        if name not in reference_state:
            raise ValueError(f"the reference weights lack {name!r} (layer {layer.name!r}).")
        if reference_state[name].shape != named[name].shape:
            raise ValueError(
                f"the reference weights' {name!r} has shape {tuple(reference_state[name].shape)}, "
                f"the model's {tuple(named[name].shape)}: they are not the same architecture."
            )


@contextmanager
def rollback(
    model: nn.Module, reference_state: Mapping[str, Tensor], layer: Layer
) -> Iterator[nn.Module]:
    """Within the block, ``layer``'s parameters hold the reference values; all else is untouched.

    The layer's own values are restored bit for bit on exit (also after an exception).

    Args:
        model: the (overfit) model, changed in place for the block.
        reference_state: the reference weights, keyed as ``model.named_parameters()``.
        layer: the candidate layer to roll back.
    """
    check_reference(model, reference_state, layer)
    named = dict(model.named_parameters())
    params = [named[name] for name in layer.param_names]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for name, p in zip(layer.param_names, params, strict=True):
            p.copy_(reference_state[name])
    try:
        yield model
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved, strict=True):
                p.copy_(value)


@dataclass(frozen=True)
class RollbackResult:
    """Robust accuracy without rollback and with each layer rolled back in turn.

    Attributes:
        base: robust accuracy of the model as given.
        rolled: layer name to robust accuracy with that layer rolled back, in layer order.
    """

    base: float
    rolled: dict[str, float]

    def gains(self) -> dict[str, float]:
        """Layer name to its rollback gain: accuracy rolled back minus accuracy as given."""
        return {name: value - self.base for name, value in self.rolled.items()}


def rollback_gains(
    model: nn.Module,
    reference_state: Mapping[str, Tensor],
    layers: Sequence[Layer],
    evaluate: Evaluate,
) -> RollbackResult:
    """Robust accuracy as given and with each of ``layers`` rolled back to the reference.

    Args:
        model: the (overfit) model; its weights are unchanged afterwards.
        reference_state: the reference (early-stopped) weights, keyed as
            ``model.named_parameters()``.
        layers: the candidates (from :func:`robust_vit.layers.candidate_layers`).
        evaluate: robust accuracy of a model on a fixed set with a fixed attack and seeds.
    """
    for layer in layers:
        check_reference(model, reference_state, layer)
    base = evaluate(model)
    rolled = {}
    for layer in layers:
        with rollback(model, reference_state, layer) as rolled_model:
            rolled[layer.name] = evaluate(rolled_model)
    return RollbackResult(base, rolled)
