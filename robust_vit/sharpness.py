"""Per-layer sharpness of the (adversarial) loss, and layer selection from the scores (SAFER)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from robust_vit.attacks.pgd import eval_mode
from robust_vit.errors import ConfigError
from robust_vit.layers import Layer

AttackFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]


class ScoreVariant(str, Enum):
    """How a layer's sharpness is estimated."""

    ONE_STEP = "one_step"
    FIRST_ORDER = "first_order"
    MULTI_STEP = "multi_step"


class Radius(str, Enum):
    """``absolute``: the ball has radius rho; ``relative``: rho * ||w_l||."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class Selection(str, Enum):
    """Which scored layers are trained."""

    SHARPEST = "sharpest"
    FLATTEST = "flattest"
    RANDOM = "random"
    ALL = "all"


def _norm(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.norm(2) for t in tensors]).norm(2)


@contextmanager
def _requiring_grad(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Let autograd reach ``params`` for the block, also when the caller froze them."""
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


@torch.no_grad()
def _set(params: Sequence[Tensor], values: Sequence[Tensor]) -> None:
    for p, v in zip(params, values, strict=True):
        p.copy_(v)


def _one_step(
    model: nn.Module,
    params: list[nn.Parameter],
    grads: list[Tensor],
    x: Tensor,
    y: Tensor,
    radius: float,
) -> float:
    saved = [p.detach().clone() for p in params]
    scale = radius / (_norm(grads) + 1e-12)
    _set(params, [w + scale * g for w, g in zip(saved, grads, strict=True)])
    with torch.no_grad():
        loss = _loss(model, x, y).item()
    _set(params, saved)
    return loss


def _multi_step(
    model: nn.Module,
    params: list[nn.Parameter],
    grads: list[Tensor],
    x: Tensor,
    y: Tensor,
    radius: float,
    steps: int,
) -> float:
    saved = [p.detach().clone() for p in params]
    deltas = [torch.zeros_like(p) for p in params]
    best = -float("inf")
    for step in range(steps):
        scale = 2 * radius / steps / (_norm(grads) + 1e-12)
        deltas = [d + scale * g for d, g in zip(deltas, grads, strict=True)]
        shrink = (radius / (_norm(deltas) + 1e-12)).clamp(max=1.0)
        deltas = [d * shrink for d in deltas]
        _set(params, [w + d for w, d in zip(saved, deltas, strict=True)])
        with torch.enable_grad():
            loss = _loss(model, x, y)
            if step < steps - 1:
                grads = list(torch.autograd.grad(loss, params))
        best = max(best, loss.item())
    _set(params, saved)
    return best


def layer_sharpness(
    model: nn.Module,
    layers: Sequence[Layer],
    batches: Sequence[Batch],
    *,
    rho: float = 0.05,
    radius: Radius | str = Radius.ABSOLUTE,
    variant: ScoreVariant | str = ScoreVariant.ONE_STEP,
    ascent_steps: int = 3,
    attack: AttackFn | None = None,
) -> dict[str, float]:
    """How much the loss rises when only one layer moves towards its local worst case.

    Per batch: x' = ``attack(model, x, y)`` at the current weights (clean x when None),
    g_l = grad of CE(f(x'), y) w.r.t. layer l, r_l = rho (absolute) or rho * ||w_l|| (relative).
    ``one_step``: CE at w_l + r_l * g_l / ||g_l|| minus CE at w. ``first_order``: r_l * ||g_l||.
    ``multi_step``: the highest CE over ``ascent_steps`` normalised ascent steps projected onto
    the r_l ball, minus CE at w. Scores are averaged over the batches. The model runs in eval
    mode, its weights are restored bit for bit and parameter ``.grad`` fields are untouched.

    Args:
        model: maps images in [0, 1] to logits; ``layers`` name its parameters.
        layers: the candidates (from :func:`robust_vit.layers.candidate_layers`).
        batches: the fixed scoring batches ``(x, y)``, already on the model's device.
        rho: radius of the perturbation.
        radius: ``absolute`` or ``relative`` to the layer's weight norm.
        variant: ``one_step``, ``first_order`` or ``multi_step``.
        ascent_steps: steps of the ``multi_step`` variant.
        attack: makes the scoring inputs (e.g. PGD) from the model and a clean batch.
    """
    variant, radius = ScoreVariant(variant), Radius(radius)
    if not batches:
        raise ValueError("layer_sharpness needs at least one scoring batch.")
    named = dict(model.named_parameters())
    groups = [[named[n] for n in layer.param_names] for layer in layers]
    flat = [p for group in groups for p in group]
    totals = dict.fromkeys((layer.name for layer in layers), 0.0)
    with eval_mode(model), _requiring_grad(flat):
        for x, y in batches:
            x_score = attack(model, x, y) if attack is not None else x
            with torch.enable_grad():
                loss = _loss(model, x_score, y)
                grads = list(torch.autograd.grad(loss, flat))
            base, offset = loss.item(), 0
            for layer, params in zip(layers, groups, strict=True):
                g = grads[offset : offset + len(params)]
                offset += len(params)
                r = rho if radius is Radius.ABSOLUTE else rho * _norm(params).item()
                if variant is ScoreVariant.FIRST_ORDER:
                    score = r * _norm(g).item()
                elif variant is ScoreVariant.ONE_STEP:
                    score = _one_step(model, params, g, x_score, y, r) - base
                else:
                    score = _multi_step(model, params, g, x_score, y, r, ascent_steps) - base
                totals[layer.name] += score
    return {name: total / len(batches) for name, total in totals.items()}


def num_selected(
    num_candidates: int, *, fraction: float = 0.05, k: int | None = None, field: str = "fraction"
) -> int:
    """K = max(1, round(fraction * candidates)), or an explicit ``k``; checked against the pool.

    Args:
        num_candidates: size of the candidate pool.
        fraction: share of the candidates to select, in (0, 1].
        k: explicit count (wins over ``fraction``).
        field: config-key prefix used in errors (e.g. ``model.method.init_args``).
    """
    if k is not None:
        if not 1 <= k <= num_candidates:
            raise ConfigError(
                f"{field}.k",
                f"{k} is outside [1, {num_candidates}] (the number "
                "of candidate layers); lower k or use fraction.",
            )
        return k
    if not 0 < fraction <= 1:
        raise ConfigError(f"{field}.fraction", f"{fraction} is outside (0, 1]; e.g. 0.05.")
    return max(1, round(fraction * num_candidates))


def select_layers(
    scores: dict[str, float],
    k: int,
    selection: Selection | str = Selection.SHARPEST,
    generator: torch.Generator | None = None,
) -> list[str]:
    """The names of the ``k`` layers to train, ranked (``all`` returns every layer).

    Args:
        scores: layer name to sharpness score.
        k: how many to select.
        selection: ``sharpest`` (top-k by descending score), ``flattest``, ``random`` or ``all``.
        generator: seeds ``random`` (give every DDP rank the same seed).
    """
    selection = Selection(selection)
    names = list(scores)
    if selection is Selection.ALL:
        return names
    if selection is Selection.RANDOM:
        order = torch.randperm(len(names), generator=generator).tolist()
        return [names[i] for i in order[:k]]
    ranked = sorted(names, key=lambda n: scores[n], reverse=selection is Selection.SHARPEST)
    return ranked[:k]


def fixed_batches(
    dataset: Dataset, num_batches: int, batch_size: int, seed: int = 0
) -> list[Batch]:
    """A fixed random subset of ``dataset`` as ``num_batches`` batches (same seed, same images).

    Args:
        dataset: yields ``(image, label)`` pairs (e.g. the training set).
        num_batches: how many batches.
        batch_size: images per batch.
        seed: picks the subset.
    """
    size = len(dataset)  # type: ignore[arg-type]
    count = min(size, num_batches * batch_size)
    indices = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]
    loader = DataLoader(Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=False)
    return [(x, y) for x, y in loader]
