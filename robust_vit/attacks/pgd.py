"""Projected gradient descent (Madry et al. 2018), L-inf and L2, batched, seeded, with restarts."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from robust_vit.attacks.core import (
    LossFn,
    Norm,
    ce_loss,
    direction,
    eval_mode,
    is_correct,
    loss_and_grad,
    project,
    random_start,
    start_noise,
)

__all__ = ["Norm", "ce_loss", "eval_mode", "pgd", "project", "random_start"]


def _step_(
    x: Tensor, delta: Tensor, grad: Tensor, alpha: float, eps: float, norm: Norm, buf: Tensor
) -> None:
    """Step ``delta`` in place: move, project onto the ball, keep ``x + delta`` in [0, 1].

    Every operation rounds as its out-of-place form would, so the iterates are the same bits;
    ``buf`` (the shape of ``x``) is overwritten.
    """
    if norm is Norm.LINF:  # alpha * sign is exact, so fusing it into the add changes no rounding
        delta.add_(grad.sign(), alpha=alpha).clamp_(-eps, eps)
    else:
        delta.copy_(project(delta + alpha * direction(grad, norm), eps, norm))
    torch.add(x, delta, out=buf).clamp_(0, 1)
    torch.sub(buf, x, out=delta)


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
    restarts: int = 1,
    early_exit: bool | None = None,
    seeds: Tensor | None = None,
    eot: int = 1,
) -> Tensor:
    """Adversarial examples within ``eps`` of ``x`` (and in [0, 1]) that ascend ``loss_fn``.

    Distance measure: L-inf or L2, in pixel units (inputs in [0, 1]). The model's mode is left
    as the caller set it (wrap the call in :func:`eval_mode` for the usual protocol), and only the
    input gets gradients: parameter ``.grad`` fields are untouched.

    Two semantics, chosen by ``early_exit``:

    - ``None`` (training, the default): every example takes all steps; the last iterate is returned
      (over restarts, the one with the highest loss).
    - ``True`` / ``False`` (evaluation; ``y`` are labels): each example's first misclassified point
      (clean input, random start or any step of any restart) is returned, else the last iterate of
      the last restart. ``True`` stops computing an example once it is misclassified; ``False``
      keeps stepping it. The results are identical; ``True`` is faster.

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
        restarts: independent random starts (in evaluation only still-correct examples restart).
        early_exit: ``None`` for training semantics, else evaluation semantics (see above).
        seeds: one seed per example for its random starts (overrides ``generator``), which makes
            results independent of batch size and sharding.
        eot: forward and backward passes averaged per step (expectation over transformation,
            for randomised models; 1 for a deterministic one).

    Shape:
        x: ``(N, C, H, W)`` in [0, 1]; y: ``(N,)``; returns ``(N, C, H, W)`` in [0, 1].

    Examples::

        >>> with eval_mode(model):
        ...     x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=20, early_exit=True)
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    norm = Norm(norm)
    x = x.detach()

    def start(restart: int) -> Tensor:
        if not (random_init and eps > 0):
            return torch.zeros_like(x)
        noise = start_noise(x, eps, norm, generator=generator, seeds=seeds, restart=restart)
        return (x + noise).clamp(0, 1) - x

    if early_exit is None:
        return _pgd_ascent(model, x, y, start, eps, alpha, steps, norm, loss_fn, restarts, eot)
    return _pgd_until_wrong(
        model, x, y, start, eps, alpha, steps, norm, loss_fn, restarts, early_exit, eot
    )


def _pgd_ascent(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    start: Callable[[int], Tensor],
    eps: float,
    alpha: float,
    steps: int,
    norm: Norm,
    loss_fn: LossFn,
    restarts: int,
    eot: int,
) -> Tensor:
    best, best_loss = x, None
    for restart in range(restarts):
        delta = start(restart)
        xa = x + delta
        for _ in range(steps):
            _, _, grad = loss_and_grad(model, xa, y, loss_fn, eot)
            _step_(x, delta, grad, alpha, eps, norm, xa)
            torch.add(x, delta, out=xa)
        if restarts == 1:
            return xa
        with torch.no_grad():
            loss = loss_fn(model(xa), y)
        better = loss > best_loss if best_loss is not None else torch.ones_like(loss).bool()
        best = torch.where(better.view(-1, *([1] * (x.ndim - 1))), xa, best)
        best_loss = loss if best_loss is None else torch.maximum(loss, best_loss)
    return best.detach()


def _pgd_until_wrong(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    start: Callable[[int], Tensor],
    eps: float,
    alpha: float,
    steps: int,
    norm: Norm,
    loss_fn: LossFn,
    restarts: int,
    early_exit: bool,
    eot: int,
) -> Tensor:
    """Evaluation semantics: one forward+backward per step on the still-correct examples only.

    The still-correct examples are gathered once per restart and compacted only when one of them
    is misclassified; the forward that takes the gradient at an iterate also scores it. Only a
    restart that another one follows scores its last iterate (the returned point is that iterate
    either way). Without early exit the fooled examples keep stepping in their own pass.
    """
    fooled = ~is_correct(model, x, y)
    best = x.clone()
    for restart in range(restarts):
        delta = start(restart)
        idx = (~fooled).nonzero().flatten()
        xs, ys, ds = x[idx], y[idx], delta[idx]
        xa = xs + ds
        for _ in range(steps):
            if not early_exit:
                _step_fooled(model, x, y, delta, fooled, alpha, eps, norm, loss_fn, eot)
            if not idx.numel():
                continue
            logits, _, grad = loss_and_grad(model, xa, ys, loss_fn, eot)
            wrong = logits.argmax(dim=1) != ys
            left = bool(wrong.any())
            if left:
                best[idx[wrong]] = xa[wrong]
                fooled[idx[wrong]] = True
            _step_(xs, ds, grad, alpha, eps, norm, xa)
            if left:
                if not early_exit:
                    delta[idx[wrong]] = ds[wrong]
                keep = ~wrong
                idx, xs, ys, ds = idx[keep], xs[keep], ys[keep], ds[keep]
                xa = xs + ds
            else:
                torch.add(xs, ds, out=xa)
        if restart < restarts - 1 and idx.numel():
            fooled[idx[~is_correct(model, xa, ys)]] = True
        best[idx] = xa
    return best.detach()


def _step_fooled(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    fooled: Tensor,
    alpha: float,
    eps: float,
    norm: Norm,
    loss_fn: LossFn,
    eot: int,
) -> None:
    """Step the fooled examples' ``delta`` in place (the work kept without early exit)."""
    idx = fooled.nonzero().flatten()
    if idx.numel():
        xs, ds = x[idx], delta[idx]
        xa = xs + ds
        _, _, grad = loss_and_grad(model, xa, y[idx], loss_fn, eot)
        _step_(xs, ds, grad, alpha, eps, norm, xa)
        delta[idx] = ds
