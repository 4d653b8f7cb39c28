"""How large a model's approximate nullspace is: two measurements in ANF's token units.

Both use ANF's eps test on one fixed batch of images ``x``: a token noise passes when the batch
mean of ``sum_k (p_clean,k - p_noisy,k)^2`` (:func:`robust_vit.anf.prob_change`) is below
``eps``. Norms are in token units: the L2 norm of the whole ``(1, N, D)`` noise divided by the
RMS of the clean patch tokens of ``x`` (:func:`robust_vit.anf.token_rms`), i.e. the norm of
``u`` in ``noise = rms * u``, as ANF's ``noise_units: token_rms`` measures it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from robust_vit.anf import noise_shape, noisy_forward, prob_change, synthesize_noise, token_rms
from robust_vit.attacks.pgd import eval_mode
from robust_vit.models import NormalizedViT


def eps_criterion(model: NormalizedViT, x: Tensor, noise: Tensor) -> float:
    """ANF's stop criterion of token ``noise`` on images ``x`` (the model in eval mode)."""
    with eval_mode(model), torch.no_grad():
        return float(prob_change(model(x), noisy_forward(model, x, noise)))


def passes(model: NormalizedViT, x: Tensor, noise: Tensor, eps: float) -> bool:
    """Whether token ``noise`` leaves the outputs on ``x`` within ``eps`` (ANF's eps test)."""
    return eps_criterion(model, x, noise) < eps


@dataclass(frozen=True)
class PassingNorm:
    """The largest passing norm along the synthesised noise's direction, in token units.

    Attributes:
        norm: the largest norm found to pass (``lower``).
        lower: a norm that passes (0 when even the smallest tried failed: 0 always passes).
        upper: a norm that fails, within ``rel_tol`` of ``lower``; None when none up to
            ``max_norm`` failed (then ``norm`` is ``max_norm``, a lower bound).
        synthesized: the norm of the synthesised noise itself.
        reached: whether the synthesis met eps on its own batches.
        rms: the clean tokens' RMS (the token unit, absolute).
    """

    norm: float
    lower: float
    upper: float | None
    synthesized: float
    reached: bool
    rms: float


def largest_passing_norm(
    model: NormalizedViT,
    x: Tensor,
    *,
    eps: float = 0.03,
    init_lim: float = 3.0,
    lr: float = 0.1,
    max_steps: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    max_norm: float = 1e4,
    rel_tol: float = 1e-3,
) -> PassingNorm:
    """Synthesise ANF's noise with a fixed budget and seed, then scale it until the eps test fails.

    The noise is :func:`robust_vit.anf.synthesize_noise` in token units (``init_lim``, ``lr`` in
    units of the clean tokens' RMS, ``max_steps`` updates on batches of ``batch_size`` cycling
    over ``x``, initialisation seeded by ``seed``): the method's own routine. Only its direction
    is kept. Along that ray, starting from the bracket ``[0, synthesised norm]`` (doubled until
    its upper end fails or exceeds ``max_norm``), bisection on the whole batch ``x`` narrows a
    bracket ``[lower, upper]`` whose lower end passes and upper end fails until
    ``upper - lower <= rel_tol * upper``. What is measured is that boundary: the criterion need
    not be monotone along the ray, so a larger passing norm beyond ``upper`` is not excluded.

    Args:
        model: the classifier (images in [0, 1]) with a timm ViT inside.
        x: the fixed images, on the model's device.
        eps: the eps test's threshold.
        init_lim: half-width of the noise's uniform start (token units).
        lr: AdamW learning rate of the noise (token units).
        max_steps: the synthesis budget.
        batch_size: synthesis batch size.
        seed: seeds the synthesis.
        max_norm: the largest norm tried (token units).
        rel_tol: relative width at which the bisection stops.
    """
    rms = token_rms(model, x)
    result = synthesize_noise(
        model,
        itertools.cycle(x.split(batch_size)),
        noise_shape(model, x, "token"),
        eps=eps,
        init_lim=init_lim,
        lr=lr,
        max_steps=max_steps,
        generator=torch.Generator().manual_seed(seed),
        scale=rms,
    )
    direction = result.noise / result.noise.norm()
    synthesized = result.norm / rms

    def ok(norm: float) -> bool:
        return passes(model, x, rms * norm * direction, eps)

    lower, upper = 0.0, min(max(synthesized, rel_tol), max_norm)
    while ok(upper):
        lower = upper
        if upper >= max_norm:
            return PassingNorm(max_norm, max_norm, None, synthesized, result.reached, rms)
        upper = min(2 * upper, max_norm)
    while upper - lower > rel_tol * upper:
        middle = (lower + upper) / 2
        lower, upper = (middle, upper) if ok(middle) else (lower, middle)
    return PassingNorm(lower, lower, upper, synthesized, result.reached, rms)


def random_directions(shape: tuple[int, ...], num: int, seed: int) -> Tensor:
    """``num`` Gaussian directions of unit L2 norm, shape ``(num, *shape[1:])``, seeded."""
    draw = torch.randn(num, *shape[1:], generator=torch.Generator().manual_seed(seed))
    return draw / draw.flatten(1).norm(dim=1).view(-1, *[1] * (len(shape) - 1))


def random_pass_fraction(
    model: NormalizedViT,
    x: Tensor,
    norm: float,
    *,
    eps: float = 0.03,
    num_directions: int = 32,
    seed: int = 0,
) -> float:
    """Share of seeded random token directions, scaled to ``norm`` token units, passing on ``x``.

    Each direction is a Gaussian ``(1, N, D)`` draw normalised to unit L2 norm, so the noise is
    ``rms * norm * d``; it passes when ANF's eps test on the whole batch ``x`` does.

    Args:
        model: the classifier (images in [0, 1]) with a timm ViT inside.
        x: the fixed images, on the model's device.
        norm: the noise's L2 norm in token units.
        eps: the eps test's threshold.
        num_directions: directions drawn.
        seed: seeds the directions.
    """
    rms = token_rms(model, x)
    shape = noise_shape(model, x, "token")
    directions = random_directions(shape, num_directions, seed).to(x)
    passed = sum(passes(model, x, rms * norm * d.unsqueeze(0), eps) for d in directions)
    return passed / num_directions
