"""The approximate nullspace's size: largest passing norm and random pass fraction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from robust_vit.anf import noise_shape, synthesize_noise, token_rms
from robust_vit.models import NormalizedViT
from robust_vit.nullspace_size import (
    largest_passing_norm,
    passes,
    random_directions,
    random_pass_fraction,
)
from tests.fakes import SLICE

# average pooling without a class token: a one-block random ViT whose predictions vary by image
TINY = {"embed_dim": 12, "depth": 1, "num_heads": 2, "global_pool": "avg", "class_token": False}
SYNTHESIS = {"max_steps": 20, "batch_size": 16}


def tiny_model() -> NormalizedViT:
    """A random tiny ViT with a unit-scale head, so its outputs react to token noise."""
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224", num_classes=10, img_size=32, in_chans=1, patch_size=8, **TINY
    )
    with torch.no_grad():
        vit.head.weight.normal_(0, 1)
    return NormalizedViT(vit, [0.5], [0.5]).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """32 Fashion-MNIST test images at 32 x 32."""
    x = torch.from_numpy(np.load(SLICE)["x_test"][:32]).float().unsqueeze(1) / 255
    return F.interpolate(x, size=32)


def test_bracket_passes_below_and_fails_above(images: torch.Tensor) -> None:
    model = tiny_model()
    found = largest_passing_norm(model, images, **SYNTHESIS)
    assert found.upper is not None and 0 < found.lower == found.norm < found.upper
    assert found.upper - found.lower <= 1e-3 * found.upper
    # rebuild the measured direction from the same seeded synthesis
    again = largest_passing_norm(model, images, **SYNTHESIS)
    assert again == found
    import itertools

    rms = token_rms(model, images)
    noise = synthesize_noise(
        model,
        itertools.cycle(images.split(16)),
        noise_shape(model, images, "token"),
        max_steps=20,
        generator=torch.Generator().manual_seed(0),
        scale=rms,
    ).noise
    direction = noise / noise.norm()
    assert passes(model, images, rms * found.lower * direction, 0.03)
    assert not passes(model, images, rms * found.upper * direction, 0.03)
    assert not passes(model, images, rms * 1.1 * found.norm * direction, 0.03)


def test_softer_model_passes_at_larger_norms(images: torch.Tensor) -> None:
    model = tiny_model()
    untouched = largest_passing_norm(model, images, **SYNTHESIS).norm
    with torch.no_grad():  # same predictions, flatter probabilities: less sensitive to noise
        model.vit.head.weight.mul_(0.2)
        model.vit.head.bias.mul_(0.2)
    assert largest_passing_norm(model, images, **SYNTHESIS).norm > untouched


def test_model_blind_to_tokens_passes_up_to_the_cap(images: torch.Tensor) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.vit.head.weight.zero_()
    found = largest_passing_norm(model, images, max_norm=500.0, **SYNTHESIS)
    assert found.upper is None and found.norm == 500.0


def test_random_pass_fraction_is_one_at_zero_and_falls(images: torch.Tensor) -> None:
    model = tiny_model()
    norms = [0.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    fractions = [random_pass_fraction(model, images, n, num_directions=16) for n in norms]
    assert fractions[0] == 1.0
    assert fractions[-1] < 1.0
    assert all(a >= b for a, b in itertools.pairwise(fractions))


def test_random_directions_are_unit_and_seeded() -> None:
    d = random_directions((1, 16, 12), 5, seed=3)
    assert d.shape == (5, 16, 12)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(5))
    assert torch.equal(d, random_directions((1, 16, 12), 5, seed=3))
    assert not torch.equal(d, random_directions((1, 16, 12), 5, seed=4))
