"""Refuse a built timm model whose shape would crash or crop the image at its first forward pass.

The rules read the model timm built (its patch embeddings, blocks, attention heads and weight
shapes) rather than repeating timm's arithmetic, so they hold for any timm architecture. They run
on a model built on the ``meta`` device, before any weight is allocated or any forward pass.
"""

from __future__ import annotations

from timm.layers import PatchEmbed
from torch import nn

from robust_vit.errors import ConfigError

KWARGS_FIELD = "model.model_kwargs"
PATCH_FIELD = "model.patch_size"


def check_geometry(vit: nn.Module, mlp_ratio: float | None = None) -> None:
    """Fail naming the field when ``vit``'s geometry cannot classify a whole image.

    Args:
        vit: the built model (on any device, ``meta`` included).
        mlp_ratio: the MLP ratio the user asked for, if any (timm reads a width of 0 as "none
            given" and silently builds its default width instead).
    """
    for embed in vit.modules():
        if isinstance(embed, PatchEmbed):
            check_patch_grid(embed)
    check_depth(vit)
    check_attention_heads(vit)
    check_layer_widths(vit)
    if mlp_ratio is not None:
        check_mlp_width(vit, mlp_ratio)


def check_patch_grid(embed: PatchEmbed) -> None:
    """Fail unless the patches tile the image exactly (timm would crop the remainder silently)."""
    if embed.img_size is None or embed.dynamic_img_pad:
        return  # the model takes any size (and pads): nothing is cropped
    for side, patch, cells in zip(embed.img_size, embed.patch_size, embed.grid_size, strict=True):
        if cells >= 1 and cells * patch == side:
            continue
        divisors = [d for d in range(2, side + 1) if side % d == 0]
        what = (
            f"is larger than the {side} px image"
            if cells < 1
            else f"does not tile the {side} px image: the model would see {cells * patch} px "
            f"and silently crop the other {side - cells * patch}"
        )
        raise ConfigError(
            PATCH_FIELD,
            f"a {patch} px patch {what} (data.img_size). Set model.patch_size to a divisor of "
            f"{side} ({', '.join(map(str, divisors))}), or data.img_size to a multiple of {patch}.",
        )


def check_depth(vit: nn.Module) -> None:
    """Fail when the model has a ``blocks`` stack with no block in it (depth 0)."""
    blocks = getattr(vit, "blocks", None)
    if isinstance(blocks, nn.Module) and len(list(blocks.children())) == 0:
        raise ConfigError(
            KWARGS_FIELD, "depth 0 builds no transformer block. Set depth to at least 1."
        )


def check_attention_heads(vit: nn.Module) -> None:
    """Fail when an attention layer has fewer than one head, or heads narrower than one unit."""
    for name, module in vit.named_modules():
        for attr in ("num_heads", "head_dim"):
            value = getattr(module, attr, None)
            if isinstance(value, int) and value < 1:
                raise ConfigError(
                    KWARGS_FIELD,
                    f"{name}.{attr} is {value}. Set num_heads to at least 1 and embed_dim to a "
                    "multiple of it.",
                )


def check_layer_widths(vit: nn.Module) -> None:
    """Fail when a weight has a dimension of 0 (a layer of no unit)."""
    for name, parameter in vit.named_parameters():
        if parameter.numel() == 0:
            raise ConfigError(
                KWARGS_FIELD,
                f"{name} has shape {tuple(parameter.shape)}: a layer of width 0. Every width "
                "(embed_dim, mlp_ratio * embed_dim, ...) must be at least 1.",
            )


def check_mlp_width(vit: nn.Module, mlp_ratio: float) -> None:
    """Fail when ``mlp_ratio`` times the model's width rounds to an MLP of no unit."""
    width = getattr(vit, "embed_dim", None)
    if isinstance(width, int) and int(width * mlp_ratio) < 1:
        raise ConfigError(
            f"{KWARGS_FIELD}.mlp_ratio",
            f"{mlp_ratio} * embed_dim {width} is an MLP of width {int(width * mlp_ratio)}, which "
            f"timm would silently replace by {width}. Set mlp_ratio to at least {1 / width:.3g}.",
        )
