"""The exact nullspace of a ViT's patch embedding, and image noise that lies in it.

A timm patch embedding is a convolution whose kernel equals its stride, so it maps every patch
``v`` (``c * ph * pw`` values) linearly to ``W v + b`` with ``W`` of shape ``d x (c ph pw)``.
Noise whose every patch lies in ``null(W)`` leaves the patch tokens, hence the whole model output,
unchanged (up to float error) when the input is not clamped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robust_vit.errors import ConfigError


@dataclass(frozen=True)
class PatchNullspace:
    """The nullspace of one patch embedding.

    Attributes:
        basis: orthonormal rows spanning ``null(W)``, shape ``(k, c * ph * pw)`` (``k`` may be 0).
        singular_values: all singular values of ``W``, descending.
        in_chans: channels ``c`` of a patch.
        patch_size: ``(ph, pw)``.
        tol: relative tolerance: singular values ``<= tol * s_max`` count as zero.
    """

    basis: Tensor
    singular_values: Tensor
    in_chans: int
    patch_size: tuple[int, int]
    tol: float

    @property
    def dim(self) -> int:
        """Dimension of the nullspace of one patch."""
        return int(self.basis.shape[0])

    @property
    def patch_dim(self) -> int:
        """Number of values in one patch, ``c * ph * pw``."""
        return self.in_chans * self.patch_size[0] * self.patch_size[1]


def model_label(vit: nn.Module) -> str:
    """The timm architecture name of ``vit`` when known, else its class name."""
    cfg = getattr(vit, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(vit).__name__)


def patch_projection(vit: nn.Module) -> nn.Conv2d:
    """The convolution of ``vit.patch_embed``, checked to act on non-overlapping patches."""
    proj = getattr(getattr(vit, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise ConfigError(
            "model.model_name",
            f"{model_label(vit)} has no patch_embed.proj convolution, so it has no linear patch "
            "embedding to take a nullspace of. Use a timm ViT (vit_*, deit_*, *_dinov2).",
        )
    if tuple(proj.kernel_size) != tuple(proj.stride) or proj.groups != 1:
        raise ConfigError(
            "model.model_name",
            f"{model_label(vit)}'s patch embedding has kernel {proj.kernel_size}, stride "
            f"{proj.stride}, groups {proj.groups}: patches overlap, so no patch-wise nullspace.",
        )
    return proj


def patch_nullspace(vit: nn.Module, tol: float = 1e-6) -> PatchNullspace:
    """The nullspace of ``vit``'s patch embedding, from an SVD of its weight in float64.

    Args:
        vit: a timm model with ``patch_embed.proj`` (works in the model's normalised input space).
        tol: singular values at or below ``tol * s_max`` count as zero.
    """
    proj = patch_projection(vit)
    weight = proj.weight.detach().to(torch.float64).flatten(1)  # (d, c*ph*pw)
    _, s, vh = torch.linalg.svd(weight, full_matrices=True)
    rank = int((s > tol * s.max()).sum()) if s.numel() else 0
    ph, pw = (int(v) for v in proj.kernel_size)
    return PatchNullspace(
        basis=vh[rank:].to(proj.weight.dtype),
        singular_values=s.to(torch.float32),
        in_chans=int(proj.in_channels),
        patch_size=(ph, pw),
        tol=tol,
    )


def sample_nullspace_noise(
    space: PatchNullspace,
    num: int,
    image_size: tuple[int, int],
    *,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Image-shaped noise whose every patch lies in ``space`` (Gaussian coefficients).

    Pixels outside the last full patch (when the size is not a multiple of the patch) stay zero.

    Args:
        space: the nullspace from :func:`patch_nullspace`.
        num: number of noise images.
        image_size: ``(H, W)`` of the images.
        scale: standard deviation of the coefficients on the orthonormal basis (so each noise
            patch has expected squared norm ``scale**2 * dim``).
        generator: seeds the coefficients.

    Returns:
        Noise of shape ``(num, c, H, W)`` in the space the patch embedding sees.
    """
    (ph, pw), c = space.patch_size, space.in_chans
    gh, gw = image_size[0] // ph, image_size[1] // pw
    device = generator.device if generator is not None else space.basis.device
    coeff = torch.randn(num, gh, gw, space.dim, generator=generator, device=device) * scale
    patches = coeff.to(space.basis) @ space.basis  # (num, gh, gw, c*ph*pw)
    grid = patches.view(num, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
    noise = torch.zeros(num, c, *image_size, dtype=space.basis.dtype, device=space.basis.device)
    noise[:, :, : gh * ph, : gw * pw] = grid.reshape(num, c, gh * ph, gw * pw)
    return noise
