"""Projected gradient descent (Madry et al. 2018), L-inf and L2, batched and seeded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


class Norm(str, Enum):
    """Threat model of an attack."""

    LINF = "linf"
    L2 = "l2"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore the caller's mode exactly."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.ndim - 1)))


def project(delta: Tensor, eps: float, norm: Norm | str) -> Tensor:
    """Project perturbations onto the ``eps`` ball of ``norm``."""
    if Norm(norm) is Norm.LINF:
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta)).clamp(max=1.0)


def random_start(x: Tensor, eps: float, norm: Norm | str, generator: torch.Generator | None) -> Tensor:
    """A uniform point of the L-inf ball, or a uniform direction and radius in the L2 ball."""
    if Norm(norm) is Norm.LINF:
        u = torch.rand(x.shape, generator=generator, device=generator.device if generator else "cpu")
        return (u.to(x.device, x.dtype) * 2 - 1) * eps
    g = torch.randn(x.shape, generator=generator, device=generator.device if generator else "cpu")
    g = g.to(x.device, x.dtype)
    r = torch.rand(x.shape[0], generator=generator, device=generator.device if generator else "cpu")
    return g / _flat_norm(g) * r.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1))) * eps


def ce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example cross-entropy, the default loss an attack ascends."""
    return F.cross_entropy(logits, target, reduction="none")


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    norm: Norm | str = Norm.LINF,
    random_init: bool = True,
    loss_fn: LossFn = ce_loss,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial examples within ``eps`` of ``x`` (and in [0, 1]) that ascend ``loss_fn``.

    Distance measure: L-inf or L2, in pixel units (inputs in [0, 1]). The model's mode is left
    as the caller set it (wrap the call in :func:`eval_mode` for the usual protocol), and only the
    input gets gradients: parameter ``.grad`` fields are untouched.

    Args:
        model: maps images in [0, 1] to logits.
        x: clean images, shape ``(N, C, H, W)``.
        y: targets passed to ``loss_fn`` (labels for CE; clean probabilities for TRADES' KL).
        eps: radius of the threat model.
        alpha: step size.
        steps: number of ascent steps (0 returns the start point).
        norm: ``linf`` (signed gradient steps) or ``l2`` (normalised gradient steps).
        random_init: start from a uniform random point of the ball instead of ``x``.
        loss_fn: per-example loss ``(logits, y) -> (N,)`` to maximise.
        generator: seeds the random start.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    norm = Norm(norm)
    x = x.detach()
    delta = random_start(x, eps, norm, generator) if random_init and eps > 0 else torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(x + delta), y).sum()
            (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            step = grad.sign() if norm is Norm.LINF else grad / _flat_norm(grad)
            delta = project(delta + alpha * step, eps, norm)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()
