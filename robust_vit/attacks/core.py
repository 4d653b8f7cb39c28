"""Shared pieces of every attack: threat models, projection, seeded starts, scoring, eval mode."""

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


def direction(grad: Tensor, norm: Norm) -> Tensor:
    """Steepest-ascent direction of unit size: the sign (L-inf) or the normalised gradient (L2)."""
    return grad.sign() if norm is Norm.LINF else grad / _flat_norm(grad)


def random_start(
    x: Tensor, eps: float, norm: Norm | str, generator: torch.Generator | None
) -> Tensor:
    """A uniform point of the L-inf ball, or a uniform direction and radius in the L2 ball."""
    device = generator.device if generator else "cpu"
    if Norm(norm) is Norm.LINF:
        u = torch.rand(x.shape, generator=generator, device=device)
        return (u.to(x.device, x.dtype) * 2 - 1) * eps
    g = torch.randn(x.shape, generator=generator, device=device).to(x.device, x.dtype)
    r = torch.rand(x.shape[0], generator=generator, device=device)
    return g / _flat_norm(g) * r.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1))) * eps


def start_noise(
    x: Tensor,
    eps: float,
    norm: Norm,
    *,
    generator: torch.Generator | None = None,
    seeds: Tensor | None = None,
    restart: int = 0,
) -> Tensor:
    """A random start for the whole batch, drawn whichever examples are still being attacked.

    With ``seeds`` (one int per example) each example's noise depends only on its own seed and
    ``restart``, so results do not depend on the batch size or on how a dataset is sharded.
    """
    if seeds is None:
        return random_start(x, eps, norm, generator)
    g = torch.Generator()
    parts = []
    for seed in seeds.tolist():
        g.manual_seed((int(seed) * 1_000_003 + restart) % 2**63)
        parts.append(random_start(x[:1], eps, norm, g))
    return torch.cat(parts)


def ce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-example cross-entropy, the default loss an attack ascends."""
    return F.cross_entropy(logits, target, reduction="none")


def loss_and_grad(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn, eot: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-example loss and its gradient with respect to the input only.

    With ``eot`` > 1 (expectation over transformation, Athalye et al. 2018) each is the mean over
    ``eot`` forward and backward passes, the gradient of a randomised model's expected loss.
    """
    if eot < 1:
        raise ValueError(f"eot must be at least 1, got {eot}")
    logits, loss, grad = _one_draw(model, x, y, loss_fn)
    for _ in range(eot - 1):  # running sums: EOT needs no more memory than one draw
        more = _one_draw(model, x, y, loss_fn)
        logits, loss, grad = logits + more[0], loss + more[1], grad + more[2]
    if eot == 1:
        return logits, loss, grad
    return logits / eot, loss / eot, grad / eot


def _one_draw(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn
) -> tuple[Tensor, Tensor, Tensor]:
    """One forward and backward pass: logits, per-example loss, input gradient."""
    with torch.enable_grad():
        inputs = x.detach().requires_grad_(True)
        logits = model(inputs)
        loss = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(loss.sum(), inputs)
    return logits.detach(), loss.detach(), grad


@torch.no_grad()
def is_correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Whether the model classifies each example correctly (how every attack re-scores)."""
    return model(x).argmax(dim=1) == y


def attack_groups(fooled: Tensor, early_exit: bool) -> list[Tensor]:
    """Indices to step: the still-correct examples, then (without early exit) the fooled ones.

    Fooled examples keep stepping in their own pass, so the still-correct ones see the same
    arithmetic with and without early exit and the results are identical bit for bit.
    """
    groups = [(~fooled).nonzero().flatten()]
    if not early_exit:
        groups.append(fooled.nonzero().flatten())
    return [g for g in groups if g.numel()]
