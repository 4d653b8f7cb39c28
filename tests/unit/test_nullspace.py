from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from robust_vit.anf import token_rms
from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT
from robust_vit.nullspace import patch_nullspace, sample_nullspace_noise
from robust_vit.nullspace_report import nullspace_report

CPU_VIT = {
    "patch_size": 8,
    "in_chans": 1,
    "img_size": 32,
    "embed_dim": 48,
    "depth": 4,
    "num_heads": 3,
    "num_classes": 10,
}


def cpu_vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **CPU_VIT).eval()


def test_dimension_is_patch_size_minus_rank() -> None:
    space = patch_nullspace(cpu_vit())
    assert space.patch_dim == 64
    assert space.dim == 64 - 48
    assert space.singular_values.shape == (48,)
    assert torch.all(space.singular_values[:-1] >= space.singular_values[1:])
    gram = space.basis @ space.basis.T
    assert torch.allclose(gram, torch.eye(space.dim), atol=1e-5)


def test_basis_is_annihilated_by_the_patch_weight() -> None:
    vit = cpu_vit()
    space = patch_nullspace(vit)
    weight = vit.patch_embed.proj.weight.flatten(1)
    assert (weight @ space.basis.T).abs().max() < 1e-5 * weight.abs().max()


def test_full_rank_square_weight_has_trivial_nullspace() -> None:
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        patch_size=8,
        in_chans=1,
        img_size=32,
        embed_dim=64,
        depth=1,
        num_heads=2,
    )
    assert patch_nullspace(vit).dim == 0
    assert sample_nullspace_noise(patch_nullspace(vit), 2, (32, 32)).abs().max() == 0


def test_nullspace_noise_leaves_logits_unchanged_unclamped() -> None:
    vit = cpu_vit()
    model = NormalizedViT(vit, (0.5,), (0.5,)).eval()
    space = patch_nullspace(vit)
    x = torch.rand(4, 1, 32, 32)
    noise = sample_nullspace_noise(
        space, 4, (32, 32), scale=3.0, generator=torch.Generator().manual_seed(0)
    )
    assert noise.norm() > x.norm()  # large noise, not a trivial check
    pixel_noise = noise * model.std  # the ViT sees noise / std after normalisation
    with torch.no_grad():
        clean, noisy = model(x), model(x + pixel_noise)
        unrelated = model(x + torch.randn_like(x) * pixel_noise.std())
    assert (clean - noisy).abs().max() < 1e-4 * clean.abs().max()
    assert (clean - unrelated).abs().max() > 100 * (clean - noisy).abs().max()


def test_model_without_patch_embedding_is_named_in_the_error() -> None:
    convnet = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    with pytest.raises(ConfigError, match="resnet10t") as info:
        patch_nullspace(convnet)
    assert info.value.field == "model.model_name"


@pytest.mark.parametrize("units", ["absolute", "token_rms"])
def test_report_synthesises_in_the_units_it_names(units: str) -> None:
    vit = cpu_vit()
    model = NormalizedViT(vit, (0.5,), (0.5,)).eval()
    x = torch.rand(8, 1, 32, 32)
    init_lim, lr = 0.5, 0.1
    report = nullspace_report(
        model, x, eps=1e-12, max_steps=1, noise_units=units, init_lim=init_lim, noise_lr=lr
    )
    noise = report["anf_noise"]
    rms = token_rms(model, x)
    assert noise["scale"] == pytest.approx(rms if units == "token_rms" else 1.0)
    assert noise["noise_units"] == units and noise["steps"] == 1 and not noise["reached"]
    elements = 16 * 48  # 4 x 4 patches of width 48
    # One AdamW update moves each coordinate of u ~ U(-init_lim, init_lim) by at most about lr.
    assert noise["l2"] <= (init_lim + lr) * noise["scale"] * elements**0.5
    assert noise["l2"] >= 0.5 * init_lim / 3**0.5 * noise["scale"] * elements**0.5
