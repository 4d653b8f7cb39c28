"""Approximate nullspace noise (Liu, Singh, Li, Wang 2024): the noisy forward pass and synthesis.

One universal noise tensor is added to the patch tokens right after ``patch_embed``, before
timm's own ``_pos_embed`` (so class, distillation and register tokens are handled by timm), and
synthesised with the model frozen so that the predictions barely change: it then lies in the
model's epsilon-approximate nullspace. Pure PyTorch; collectives are used only when
``torch.distributed`` is initialised.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_vit.attacks.pgd import eval_mode
from robust_vit.distributed import distributed_mean
from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT
from robust_vit.nullspace import model_label

REQUIRED = ("patch_embed", "_pos_embed", "blocks", "norm", "forward_head")


class NoiseSpace(str, Enum):
    """Where the noise is added: patch tokens (the paper) or the [0, 1] input image."""

    TOKEN = "token"
    IMAGE = "image"


class TokenViT(Protocol):
    """The pieces of timm's ViT forward that token-space noise runs through (:data:`REQUIRED`)."""

    patch_embed: nn.Module
    blocks: nn.Module
    norm: nn.Module

    def _pos_embed(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor) -> Tensor:
        """Logits from the final tokens."""
        ...


def check_supports_token_noise(vit: nn.Module) -> TokenViT:
    """``vit`` as a :class:`TokenViT`; fails with a clear message unless it has those pieces."""
    missing = [name for name in REQUIRED if not hasattr(vit, name)]
    if missing:
        raise ConfigError(
            "model.model_name",
            f"{model_label(vit)} has no {', '.join(missing)}: token-space ANF needs a timm ViT "
            "with a patch embedding (vit_*, deit_*, *_dinov2, ...). Pick such a model, or set "
            "model.method.init_args.space=image.",
        )
    return cast(TokenViT, vit)


def noisy_forward(model: NormalizedViT, x: Tensor, noise: Tensor | None) -> Tensor:
    """Logits of images ``x`` in [0, 1] with ``noise`` added to the patch tokens.

    Follows timm's ``forward_features`` order: patch_embed -> +noise -> _pos_embed ->
    patch_drop -> norm_pre -> blocks -> norm -> forward_head. ``noise=None`` is the plain forward.
    """
    vit = check_supports_token_noise(model.vit)
    tokens = vit.patch_embed(model.normalize(x))
    if noise is not None:
        tokens = tokens + noise
    tokens = vit._pos_embed(tokens)
    for name in ("patch_drop", "norm_pre"):
        layer = getattr(model.vit, name, None)
        if layer is not None:
            tokens = layer(tokens)
    tokens = vit.norm(vit.blocks(tokens))
    return vit.forward_head(tokens)


def apply_noise(model: NormalizedViT, x: Tensor, noise: Tensor, space: NoiseSpace | str) -> Tensor:
    """Logits with ``noise`` in token space, or added (unclamped) to the input image."""
    if NoiseSpace(space) is NoiseSpace.TOKEN:
        return noisy_forward(model, x, noise)
    return model(x + noise)


def noise_shape(model: NormalizedViT, x: Tensor, space: NoiseSpace | str) -> tuple[int, ...]:
    """Shape ``(1, N, D)`` of universal token noise (or ``(1, C, H, W)`` in image space)."""
    if NoiseSpace(space) is NoiseSpace.IMAGE:
        return (1, *x.shape[1:])
    vit = check_supports_token_noise(model.vit)
    with torch.no_grad():
        return (1, *vit.patch_embed(model.normalize(x[:1])).shape[1:])


def token_rms(model: NormalizedViT, x: Tensor) -> float:
    """RMS of the clean patch tokens of ``x`` (after ``patch_embed``), averaged over ranks."""
    vit = check_supports_token_noise(model.vit)
    with torch.no_grad():
        tokens = vit.patch_embed(model.normalize(x))
        return float(distributed_mean(tokens.pow(2).mean().sqrt()))


def prob_change(clean_logits: Tensor, noisy_logits: Tensor) -> Tensor:
    """The stop criterion: batch mean of ``sum_k (p_clean,k - p_noisy,k)^2``."""
    diff = F.softmax(clean_logits, dim=-1) - F.softmax(noisy_logits, dim=-1)
    return diff.pow(2).sum(dim=-1).mean()


@dataclass(frozen=True)
class SynthesisResult:
    """A synthesised noise and how the search went (statistics averaged over ranks).

    Attributes:
        noise: the noise, detached.
        steps: noise updates made (learned) or shrinks applied (random).
        reached: whether the criterion fell below eps.
        criterion: the last tested criterion (the one that stopped the search if ``reached``).
        agreement: fraction of the last tested batch whose prediction the noise left unchanged.
        scale: the unit the search ran in (``noise = scale * u``; 1 in absolute units).
        init_lim: the half-width the learned noise started from, in units of ``scale`` (after
            the start fit of ``start_criterion``; NaN for the random control).
        initial_criterion: the criterion of the starting noise on the first batch.
    """

    noise: Tensor
    steps: int
    reached: bool
    criterion: float
    agreement: float
    scale: float = 1.0
    init_lim: float = math.nan
    initial_criterion: float = math.nan

    @property
    def norm(self) -> float:
        """L2 norm of the noise."""
        return float(self.noise.norm())


def _test(
    model: NormalizedViT,
    x: Tensor,
    noise: Tensor,
    space: NoiseSpace,
) -> tuple[Tensor, Tensor, Tensor]:
    with torch.no_grad():
        clean = model(x)
    noisy = apply_noise(model, x, noise, space)
    criterion = distributed_mean(prob_change(clean, noisy.detach()))
    agree = distributed_mean((clean.argmax(-1) == noisy.argmax(-1)).float().mean())
    return clean, noisy, torch.stack([criterion, agree])


def _fit_start(
    model: NormalizedViT,
    first: Tensor,
    u0: Tensor,
    init_lim: float,
    scale: float,
    space: NoiseSpace,
    start_criterion: float,
    max_halvings: int,
) -> tuple[Tensor, float]:
    """Halve the start ``u0`` until its criterion on ``first`` is at most ``start_criterion``."""
    with eval_mode(model), torch.no_grad():
        for _ in range(max_halvings):
            if float(_test(model, first, scale * u0, space)[2][0]) <= start_criterion:
                break
            u0, init_lim = u0 / 2, init_lim / 2
    return u0, init_lim


def synthesize_noise(
    model: NormalizedViT,
    batches: Iterator[Tensor],
    shape: tuple[int, ...],
    *,
    eps: float = 0.03,
    init_lim: float = 3.0,
    lr: float = 0.1,
    max_steps: int = 100,
    space: NoiseSpace | str = NoiseSpace.TOKEN,
    generator: torch.Generator | None = None,
    scale: float = 1.0,
    start_criterion: float | None = None,
    max_halvings: int = 8,
    start: Tensor | None = None,
) -> SynthesisResult:
    """Search a universal noise in the eps-approximate nullspace of the frozen ``model``.

    The noise is ``scale * u``: ``u`` starts Uniform(-init_lim, init_lim) and AdamW (lr, torch
    defaults) updates ``u`` only, so ``init_lim`` and ``lr`` act in units of ``scale`` (1:
    absolute, the authors' code; the clean tokens' RMS: token units). It minimises the
    batch mean of ``||logits(x; noise) - logits(x)||^2``; before each update, stop as soon as the
    (rank-averaged) batch mean of ``sum_k (p_clean,k - p_noisy,k)^2`` is below ``eps``. After
    ``max_steps`` updates the last noise is tested once more and returned either way. The model
    runs in eval mode (its mode is restored) and its ``.grad`` fields are untouched. Under DDP
    the gradients are averaged over ranks, so every rank holds the same noise and stops together.

    With ``start_criterion``, the start is fitted to the model first: the uniform draw is halved
    (at most ``max_halvings`` times) until its criterion on the first batch is at most
    ``start_criterion``, so the search starts as large as the model's sensitivity allows instead
    of at a half-width tuned by hand for another model. ``start`` (a warm start, e.g. the
    previous round's noise over ``scale``) replaces the uniform draw; its half-width is its
    largest absolute value.

    Args:
        model: the classifier (images in [0, 1]).
        batches: image batches on the model's device (needs up to ``max_steps + 1``).
        shape: noise shape, from :func:`noise_shape`.
        eps: stop threshold on the probability change.
        init_lim: half-width of the uniform initialisation.
        lr: AdamW learning rate of the noise.
        max_steps: budget of noise updates.
        space: ``token`` (after ``patch_embed``) or ``image`` (added to the input).
        generator: seeds the initialisation (same seed on every rank gives the same noise).
        scale: the unit of ``u`` (equal on every rank).
        start_criterion: fit the start's half-width to the model (None: ``init_lim`` as given).
        max_halvings: most halvings of the start's half-width.
        start: the starting ``u`` (shape ``shape``; None: Uniform(-init_lim, init_lim)).
    """
    space = NoiseSpace(space)
    device = next(model.parameters()).device
    if start is None:
        gen_device = generator.device if generator else "cpu"
        u0 = init_lim * (torch.rand(shape, generator=generator, device=gen_device) * 2 - 1)
    else:
        u0, init_lim = start.detach().clone(), float(start.abs().max())
    u0 = u0.to(device)
    first = next(batches)
    if start_criterion is not None:
        u0, init_lim = _fit_start(
            model, first, u0, init_lim, scale, space, start_criterion, max_halvings
        )
    u = u0.requires_grad_(True)
    optimizer = torch.optim.AdamW([u], lr=lr)
    steps, stats, initial = 0, torch.zeros(2), math.nan
    with eval_mode(model), torch.enable_grad():
        for x in itertools.chain([first], batches):
            clean, noisy, stats = _test(model, x, scale * u, space)
            if steps == 0:
                initial = float(stats[0])
            if stats[0] < eps or steps >= max_steps:
                break
            loss = (noisy - clean).pow(2).sum(dim=-1).mean()
            (grad,) = torch.autograd.grad(loss, u)
            u.grad = distributed_mean(grad)
            optimizer.step()
            steps += 1
    criterion, agreement = (float(v) for v in stats)
    noise = (scale * u).detach()
    return SynthesisResult(
        noise, steps, criterion < eps, criterion, agreement, scale, init_lim, initial
    )


def random_noise(
    model: NormalizedViT,
    batches: Iterator[Tensor],
    shape: tuple[int, ...],
    *,
    eps: float = 0.03,
    shrink: float = 0.8,
    max_steps: int = 100,
    space: NoiseSpace | str = NoiseSpace.TOKEN,
    generator: torch.Generator | None = None,
    scale: float = 1.0,
) -> SynthesisResult:
    """The paper's control: N(0, scale^2) noise, shrunk by ``shrink`` until the eps test passes.

    Args:
        model: the classifier (images in [0, 1]).
        batches: image batches on the model's device (needs up to ``max_steps + 1``).
        shape: noise shape, from :func:`noise_shape`.
        eps: stop threshold on the probability change.
        shrink: factor applied per failed test.
        max_steps: budget of shrinks.
        space: ``token`` or ``image``.
        generator: seeds the noise.
        scale: the draw's standard deviation (1: absolute units; the token RMS: token units).
    """
    space = NoiseSpace(space)
    device = next(model.parameters()).device
    draw = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu")
    noise, steps, stats = scale * draw.to(device), 0, torch.zeros(2)
    with eval_mode(model), torch.no_grad():
        for x in batches:
            _, _, stats = _test(model, x, noise, space)
            if stats[0] < eps or steps >= max_steps:
                break
            noise = noise * shrink
            steps += 1
    criterion, agreement = (float(v) for v in stats)
    return SynthesisResult(noise, steps, criterion < eps, criterion, agreement, scale)
