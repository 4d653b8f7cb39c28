"""Auto-PGD (Croce & Hein, ICML 2020): step-size-free PGD with momentum, CE or DLR loss.

Follows the step-size rule of the reference implementation (AutoAttack's ``autopgd_base.py``, as
in the ``pyautoattack`` package): step size ``2 eps``; momentum 0.75 from the second step on;
checkpoints after windows of ``int(0.22 steps)`` iterations, each next window ``int(0.03 steps)``
shorter down to ``int(0.06 steps)`` (all at least 1). At a checkpoint the step size is halved
when at most ``rho`` of the window's steps raised the loss (the first step's loss counts as a
rise when above 0, the reference's initial record, not when above the start's loss), or when it
was not halved at the previous checkpoint and the best loss has not risen since; a halving
restarts from the best point and its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

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


def _with_target(loss: TargetLoss, target: Tensor | None, logits: Tensor, y: Tensor) -> Tensor:
    """``loss`` at ``target``, as a two-argument loss once the target is bound."""
    return loss(logits, y, target)


def checkpoints(steps: int) -> list[int]:
    """Iterations after which APGD may halve its step size (the reference's integer windows)."""
    window = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    ckpts = []
    k = window
    while k <= steps:
        ckpts.append(k)
        window = max(window - shrink, shortest)
        k += window
    return ckpts


def halve_at_checkpoint(
    increases: Tensor,
    window: int,
    rho: float,
    halved_last: Tensor,
    best_loss: Tensor,
    best_loss_last: Tensor,
) -> Tensor:
    """Which examples halve their step size at a checkpoint.

    Args:
        increases: per example, how many of the window's steps raised the loss.
        window: iterations since the previous checkpoint.
        rho: the fraction of raising steps at or below which the step size is halved.
        halved_last: whether the step size was halved at the previous checkpoint.
        best_loss: best loss so far.
        best_loss_last: best loss at the previous checkpoint.
    """
    oscillating = increases <= rho * window
    stalled = ~halved_last & (best_loss <= best_loss_last)
    return oscillating | stalled


def logits_dim(model: nn.Module, x: Tensor) -> int:
    """Number of classes the model outputs."""
    with torch.no_grad():
        return int(model(x).shape[1])


def _view(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *([1] * (like.ndim - 1)))


def _run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    target: Tensor | None,
    delta0: Tensor,
    fooled: Tensor,
    best: Tensor,
    *,
    eps: float,
    steps: int,
    norm: Norm,
    loss: TargetLoss,
    rho: float,
    early_exit: bool,
    eot: int = 1,
) -> Tensor:
    """One APGD run from ``x + delta0``; updates ``fooled``/``best``, returns best-loss points."""
    n = len(x)
    ckpts = set(checkpoints(steps))
    eta = torch.full((n,), 2 * eps, device=x.device, dtype=x.dtype)
    x_cur = (x + delta0).clamp(0, 1)
    x_prev = x_cur.clone()
    grad = torch.zeros_like(x)
    prev_loss = torch.zeros(n, device=x.device, dtype=x.dtype)  # as the reference's record
    best_loss = torch.full((n,), -math.inf, device=x.device, dtype=x.dtype)
    x_max = x_cur.clone()
    grad_best = torch.zeros_like(x)
    increases = torch.zeros(n, device=x.device)
    halved_last = torch.ones(n, dtype=torch.bool, device=x.device)
    last_ckpt, best_at_ckpt = 0, best_loss.clone()
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
                logits, li, gi = loss_and_grad(
                    model, x_cur[idx], y[idx], partial(_with_target, loss, tgt), eot
                )
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
                increases[idx] += (li > prev_loss[idx]).float()
                prev_loss[idx] = li
            improved = li > best_loss[idx]
            x_max[idx[improved]] = x_cur[idx][improved]
            best_loss[idx[improved]] = li[improved]
            grad_best[idx[improved]] = gi[improved]
        if k in ckpts:
            halve = halve_at_checkpoint(
                increases, k - last_ckpt, rho, halved_last, best_loss, best_at_ckpt
            )
            eta = torch.where(halve, eta / 2, eta)
            x_cur = torch.where(_view(halve, x), x_max, x_cur)
            last_ckpt, halved_last, best_at_ckpt = k, halve, best_loss.clone()
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
    eot: int = 1,
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
        rho: fraction of loss-raising steps at or below which the step size is halved.
        early_exit: stop computing an example once misclassified (same result either way).
        generator: seeds the random starts.
        seeds: one seed per example (overrides ``generator``; independent of batch and shard).
        eot: forward and backward passes averaged per iteration (expectation over
            transformation, for randomised models; AutoAttack's ``rand`` version uses 20).

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
            x_max = _run(
                model,
                x,
                y,
                target,
                noise,
                fooled,
                best,
                eps=eps,
                steps=steps,
                norm=norm,
                loss=loss_fn,
                rho=rho,
                early_exit=early_exit,
                eot=eot,
            )
            run += 1
    still = ~fooled
    best[still] = x_max[still]
    return best.detach()
