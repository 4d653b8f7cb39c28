"""Auto-PGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum, CE or DLR loss.

Written from the paper's description: step size ``2 eps`` halved at checkpoints when fewer than
``rho`` of the steps since the last checkpoint raised the loss, or when neither the step size nor
the best loss changed; momentum 0.75; restart from the best point after each halving.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_vit.attacks.core import (
    Norm,
    attack_groups,
    direction,
    is_correct,
    loss_and_grad,
    project,
    start_noise,
)

TargetLoss = Callable[[Tensor, Tensor, Tensor | None], Tensor]
LOSSES = ("ce", "dlr")


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Per-example difference of logits ratio; targeted when ``target`` is given (4+ classes)."""
    z, order = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        top_is_y = order[:, -1] == y
        z_other = torch.where(top_is_y, z[:, -2], z[:, -1])
        return -(z_y - z_other) / (z[:, -1] - z[:, -3] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z[:, -1] - 0.5 * (z[:, -3] + z[:, -4]) + 1e-12)


def ce_target_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Cross-entropy of the label (untargeted), or minus that of the target (targeted)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step size: ``ceil(p_j * steps)``."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if math.ceil(q * steps) <= steps} - {0})


def logits_dim(model: nn.Module, x: Tensor) -> int:
    """Number of classes the model outputs."""
    with torch.no_grad():
        return int(model(x).shape[1])


def _view(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *([1] * (like.ndim - 1)))


def _run(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, delta0: Tensor,
         fooled: Tensor, best: Tensor, *, eps: float, steps: int, norm: Norm, loss: TargetLoss,
         rho: float, early_exit: bool) -> Tensor:
    """One APGD run from ``x + delta0``; updates ``fooled``/``best``, returns best-loss points."""
    n = len(x)
    ckpts = set(checkpoints(steps))
    eta = torch.full((n,), 2 * eps, device=x.device, dtype=x.dtype)
    x_cur = (x + delta0).clamp(0, 1)
    x_prev = x_cur.clone()
    grad = torch.zeros_like(x)
    cur_loss = torch.full((n,), -math.inf, device=x.device, dtype=x.dtype)
    best_loss = cur_loss.clone()
    x_max = x_cur.clone()
    grad_best = torch.zeros_like(x)
    increases = torch.zeros(n, device=x.device)
    last_ckpt, eta_at_ckpt, best_at_ckpt = 0, eta.clone(), best_loss.clone()
    for k in range(steps + 1):
        groups = attack_groups(fooled, early_exit)
        if not groups:
            break
        for g, idx in enumerate(groups):
            if k > 0:  # move: gradient step, then momentum (none on the first step)
                xi, ei = x_cur[idx], _view(eta[idx], x)
                z = x[idx] + project(xi + ei * direction(grad[idx], norm) - x[idx], eps, norm)
                z = z.clamp(0, 1)
                a = 0.75 if k > 1 else 1.0
                moved = xi + a * (z - xi) + (1 - a) * (xi - x_prev[idx])
                moved = (x[idx] + project(moved - x[idx], eps, norm)).clamp(0, 1)
                x_prev[idx], x_cur[idx] = xi, moved
            tgt = target[idx] if target is not None else None
            if k < steps:
                logits, li, gi = loss_and_grad(model, x_cur[idx], y[idx],
                                               lambda z_, y_, t=tgt: loss(z_, y_, t))
                grad[idx] = gi
            else:  # the last point only needs scoring
                with torch.no_grad():
                    logits = model(x_cur[idx])
                    li, gi = loss(logits, y[idx], tgt), grad[idx]
            if g == 0:
                wrong = logits.argmax(dim=1) != y[idx]
                best[idx[wrong]] = x_cur[idx][wrong]
                fooled[idx[wrong]] = True
            if k > 0:
                increases[idx] += (li > cur_loss[idx]).float()
            cur_loss[idx] = li
            improved = li > best_loss[idx]
            x_max[idx[improved]] = x_cur[idx][improved]
            best_loss[idx[improved]] = li[improved]
            grad_best[idx[improved]] = gi[improved]
        if k in ckpts:
            few = increases < rho * (k - last_ckpt)
            stuck = (eta == eta_at_ckpt) & (best_loss == best_at_ckpt)
            halve = few | stuck
            eta = torch.where(halve, eta / 2, eta)
            x_cur = torch.where(_view(halve, x), x_max, x_cur)
            last_ckpt, eta_at_ckpt, best_at_ckpt = k, eta.clone(), best_loss.clone()
            increases.zero_()
            grad = torch.where(_view(halve, x), grad_best, grad)
    return x_max


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 100,
    norm: Norm | str = Norm.LINF,
    loss: str = "ce",
    restarts: int = 1,
    targets: int = 0,
    rho: float = 0.75,
    early_exit: bool = True,
    generator: torch.Generator | None = None,
    seeds: Tensor | None = None,
) -> Tensor:
    """APGD examples: each example's first misclassified point, else its best-loss point.

    Distance measure: L-inf or L2, pixel units. Untargeted with ``targets=0``; otherwise targeted
    in turn at the ``targets`` classes the clean logits rank highest after the top one (as
    AutoAttack's APGD-T), each target one more run for the examples still correct. The caller
    owns the model's mode; only the input gets gradients.

    Args:
        model: maps images in [0, 1] to logits.
        x: clean images.
        y: labels.
        eps: radius of the threat model.
        steps: iterations per run.
        norm: ``linf`` or ``l2``.
        loss: ``ce`` or ``dlr`` (difference of logits ratio, scale invariant).
        restarts: random restarts (per target when targeted).
        targets: number of top classes to target in turn (0: untargeted).
        rho: fraction of loss-raising steps below which the step size is halved.
        early_exit: stop computing an example once misclassified (same result either way).
        generator: seeds the random starts.
        seeds: one seed per example (overrides ``generator``; independent of batch and shard).

    Shape:
        x: ``(N, C, H, W)`` in [0, 1]; y: ``(N,)``; returns ``(N, C, H, W)`` in [0, 1].

    Examples::

        >>> x_adv = apgd(model, x, y, eps=8 / 255, loss="dlr", targets=9)
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    norm = Norm(norm)
    loss_fn: TargetLoss = dlr_loss if loss == "dlr" else ce_target_loss
    x = x.detach()
    fooled = ~is_correct(model, x, y)
    best = x.clone()
    if eps == 0 or steps == 0:
        return best
    if targets >= logits_dim(model, x[:1]):
        raise ValueError(f"targets must be below the number of classes, got {targets}")
    with torch.no_grad():
        ranked = model(x).argsort(dim=1, descending=True)
    target_list: list[Tensor | None] = [ranked[:, t] for t in range(1, targets + 1)] or [None]
    x_max = x
    run = 0
    for target in target_list:
        for _ in range(restarts):
            noise = start_noise(x, eps, norm, generator=generator, seeds=seeds, restart=run)
            x_max = _run(model, x, y, target, noise, fooled, best, eps=eps, steps=steps,
                         norm=norm, loss=loss_fn, rho=rho, early_exit=early_exit)
            run += 1
    still = ~fooled
    best[still] = x_max[still]
    return best.detach()
