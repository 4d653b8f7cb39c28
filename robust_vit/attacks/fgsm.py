"""Fast gradient sign method (Goodfellow et al. 2015): one signed (L-inf) or L2 step."""

from __future__ import annotations

from torch import Tensor, nn

from robust_vit.attacks.core import LossFn, Norm, ce_loss, direction, is_correct, loss_and_grad


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: Norm | str = Norm.LINF,
    loss_fn: LossFn = ce_loss,
    early_exit: bool | None = None,
    eot: int = 1,
) -> Tensor:
    """One gradient step of size ``eps``, clipped to [0, 1].

    Distance measure: L-inf (or L2 with ``norm="l2"``), in pixel units. The caller owns the
    model's mode; only the input gets a gradient.

    Args:
        model: maps images in [0, 1] to logits.
        x: clean images.
        y: targets of ``loss_fn`` (labels for CE).
        eps: step size and radius.
        norm: ``linf`` or ``l2``.
        loss_fn: per-example loss to ascend.
        early_exit: ``None`` (training) steps every example; ``True`` / ``False`` (evaluation,
            ``y`` are labels) return already misclassified inputs unchanged, and ``True`` also
            skips their gradient. Both evaluation settings give identical results.
        eot: forward and backward passes whose gradients are averaged (randomised models).

    Shape:
        x: ``(N, C, H, W)`` in [0, 1]; y: ``(N,)``; returns ``(N, C, H, W)`` in [0, 1].

    Examples::

        >>> x_adv = fgsm(model, x, y, eps=1 / 255, early_exit=True)
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    norm = Norm(norm)
    x = x.detach()
    if early_exit is None:
        _, _, grad = loss_and_grad(model, x, y, loss_fn, eot)
        return (x + eps * direction(grad, norm)).clamp(0, 1).detach()
    correct = is_correct(model, x, y)
    out = x.clone()
    idx = correct.nonzero().flatten()
    if idx.numel():
        _, _, grad = loss_and_grad(model, x[idx], y[idx], loss_fn, eot)
        out[idx] = (x[idx] + eps * direction(grad, norm)).clamp(0, 1)
    if not early_exit and (~correct).any():
        wrong = (~correct).nonzero().flatten()
        loss_and_grad(model, x[wrong], y[wrong], loss_fn, eot)  # the work early exit saves
    return out.detach()
