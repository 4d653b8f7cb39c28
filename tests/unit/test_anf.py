from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from datamodules.tensor_images import fit_images
from lightning_modules.methods import ANF
from robust_vit.anf import (
    SynthesisResult,
    apply_noise,
    noise_shape,
    noisy_forward,
    prob_change,
    random_noise,
    synthesize_noise,
    token_rms,
)
from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT
from tests.fakes import SLICE

SMALL = {"img_size": 32, "num_classes": 10, "pretrained": False}
MODELS = {
    "vit_tiny_patch16_224": {"patch_size": 8, "embed_dim": 24, "depth": 2, "num_heads": 2},
    "deit_tiny_patch16_224": {"patch_size": 8, "embed_dim": 24, "depth": 2, "num_heads": 2},
    "deit_tiny_distilled_patch16_224": {
        "patch_size": 8,
        "embed_dim": 24,
        "depth": 2,
        "num_heads": 2,
    },
    "vit_small_patch14_reg4_dinov2": {
        "patch_size": 8,
        "embed_dim": 24,
        "depth": 2,
        "num_heads": 2,
        "dynamic_img_size": False,
    },
}


def wrap(vit: torch.nn.Module) -> NormalizedViT:
    chans = vit.patch_embed.proj.in_channels
    return NormalizedViT(vit, (0.5,) * chans, (0.5,) * chans)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zero_noise_equals_the_plain_forward(name: str) -> None:
    torch.manual_seed(0)
    model = wrap(timm.create_model(name, **SMALL, **MODELS[name])).eval()
    x = torch.rand(3, 3, 32, 32)
    shape = noise_shape(model, x, "token")
    assert shape == (1, 16, 24)
    with torch.no_grad():
        plain = model(x)
        zero = noisy_forward(model, x, torch.zeros(shape))
        noisy = noisy_forward(model, x, torch.randn(shape))
    scale = plain.abs().max()  # timm inits some heads tiny: compare relative to the logits
    torch.testing.assert_close(zero, plain, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(noisy_forward(model, x, None), plain, rtol=1e-5, atol=1e-5 * scale)
    assert (noisy - plain).abs().max() > 1e-2 * scale  # the noise does reach the output


def test_model_without_patch_embedding_gets_a_clear_error() -> None:
    convnet = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    model = NormalizedViT(convnet, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ConfigError, match=r"resnet10t.*patch_embed") as info:
        noise_shape(model, torch.rand(1, 3, 32, 32), "token")
    assert info.value.field == "model.model_name"
    assert noise_shape(model, torch.rand(1, 3, 32, 32), "image") == (1, 3, 32, 32)


def slice_images(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(SLICE)
    images = fit_images(torch.from_numpy(data[f"x_{split}"]).unsqueeze(1), 32, 1)
    return images.float() / 255, torch.from_numpy(data[f"y_{split}"]).long()


@pytest.fixture(scope="module")
def trained() -> tuple[NormalizedViT, torch.Tensor]:
    """A CPU-default-like ViT trained for a few seconds on the committed slice."""
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        in_chans=1,
        **SMALL,
        patch_size=8,
        embed_dim=32,
        depth=1,
        num_heads=2,
    )
    model = wrap(vit)
    x, y = slice_images("train")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(12):
        for idx in torch.randperm(len(x)).split(50):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), slice_images("test")[0][:128]


def cycle(x: torch.Tensor, batch: int = 32) -> Iterator[torch.Tensor]:
    return itertools.cycle(x.split(batch))


def test_synthesis_reaches_eps_and_beats_random_noise_of_the_same_norm(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    model, x_test = trained
    shape = noise_shape(model, x_test, "token")
    grads_before = [p.grad for p in model.parameters()]
    result = synthesize_noise(
        model,
        cycle(x_test),
        shape,
        eps=0.03,
        max_steps=150,
        generator=torch.Generator().manual_seed(0),
    )
    assert result.reached and result.criterion < 0.03
    assert 0 < result.steps <= 150
    assert [p.grad for p in model.parameters()] == grads_before and not model.training
    same_norm = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    same_norm = same_norm * result.norm / same_norm.norm()
    with torch.no_grad():
        clean = model(x_test)
        learned = noisy_forward(model, x_test, result.noise)
        control = noisy_forward(model, x_test, same_norm)
    agree_learned = (learned.argmax(-1) == clean.argmax(-1)).float().mean()
    agree_control = (control.argmax(-1) == clean.argmax(-1)).float().mean()
    assert prob_change(clean, learned) < 0.2 * prob_change(clean, control)
    assert 1 - agree_learned < 0.5 * (1 - agree_control)


def test_unreachable_eps_uses_the_whole_budget(trained: tuple[NormalizedViT, torch.Tensor]) -> None:
    model, x_test = trained
    shape = noise_shape(model, x_test, "token")
    result = synthesize_noise(model, cycle(x_test), shape, eps=0.0, max_steps=3)
    assert result.steps == 3 and not result.reached and result.criterion > 0


def test_random_control_shrinks_until_the_test_passes(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    model, x_test = trained
    shape = noise_shape(model, x_test, "token")
    gen = torch.Generator().manual_seed(0)
    result = random_noise(model, cycle(x_test), shape, eps=0.03, max_steps=100, generator=gen)
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert result.reached
    torch.testing.assert_close(result.noise, start * 0.8**result.steps)


def test_image_space_noise_is_added_to_the_input(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    model, x_test = trained
    x = x_test[:8]
    shape = noise_shape(model, x, "image")
    result = synthesize_noise(model, cycle(x, 4), shape, init_lim=0.5, max_steps=5, space="image")
    assert result.noise.shape == (1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            apply_noise(model, x, result.noise, "image"), model(x + result.noise)
        )


@pytest.mark.parametrize(
    ("option", "value"),
    [("eps", 0.0), ("init_lim", -1.0), ("rounds", 0), ("noise", "gaussian"), ("space", "pixel")],
)
def test_bad_anf_options_name_the_field(option: str, value: object) -> None:
    from lightning_modules.methods import ANF

    with pytest.raises(ConfigError) as info:
        ANF(**{option: value})  # type: ignore[arg-type]
    assert info.value.field == f"model.method.init_args.{option}"


def scaled_copy(model: NormalizedViT, c: float) -> NormalizedViT:
    """The same function with every residual-stream value (so every patch token) times ``c``.

    The patch embedding, class token, position embedding and each block's residual outputs are
    scaled; the layer norms then see the same normalised values (up to their eps).
    """
    scaled = copy.deepcopy(model)
    vit = scaled.vit
    with torch.no_grad():
        for tensor in (
            vit.patch_embed.proj.weight,
            vit.patch_embed.proj.bias,
            vit.cls_token,
            vit.pos_embed,
        ):
            tensor.mul_(c)
        for block in vit.blocks:
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.mul_(c)
                layer.bias.mul_(c)
    return scaled


def test_token_units_scale_the_noise_with_the_tokens(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    model, x = trained
    c = 7.0
    scaled = scaled_copy(model, c)
    assert torch.allclose(scaled(x), model(x), atol=2e-3)  # the layer norms' eps
    assert token_rms(scaled, x) == pytest.approx(c * token_rms(model, x), rel=1e-6)
    shape = noise_shape(model, x, "token")

    def noise(m: NormalizedViT, units: str) -> torch.Tensor:
        scale = token_rms(m, x[:32]) if units == "token_rms" else 1.0
        result = synthesize_noise(
            m,
            cycle(x),
            shape,
            eps=1e-9,
            init_lim=3.0,
            lr=0.1,
            max_steps=8,
            generator=torch.Generator().manual_seed(0),
            scale=scale,
        )
        assert result.steps == 8 and result.scale == scale
        return result.noise

    base, big = noise(model, "token_rms"), noise(scaled, "token_rms")
    assert float((big - c * base).norm() / (c * base).norm()) < 1e-3
    absolute_base, absolute_big = noise(model, "absolute"), noise(scaled, "absolute")
    assert float((absolute_big - c * absolute_base).norm() / (c * absolute_base).norm()) > 0.5


def test_token_units_need_token_space() -> None:
    with pytest.raises(ConfigError) as info:
        ANF(noise_units="token_rms", space="image")
    assert info.value.field == "model.method.init_args.noise_units"


def start_criterion_of(
    model: NormalizedViT, x: torch.Tensor, shape: tuple[int, ...], lim: float
) -> float:
    """The criterion of the seed-0 uniform start of half-width ``lim`` on ``x``."""
    direction = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return float(prob_change(model(x), noisy_forward(model, x, lim * direction)))


def test_the_start_fit_halves_the_start_until_the_model_barely_moves(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    model, x = trained
    shape = noise_shape(model, x, "token")
    first = x[:32]
    too_big = start_criterion_of(model, first, shape, 24.0)
    target = too_big / 4  # a bound the full start misses, so at least one halving is needed

    def search(start: float | None) -> SynthesisResult:
        return synthesize_noise(
            model,
            cycle(x),
            shape,
            eps=1e-9,
            init_lim=24.0,
            max_steps=2,
            generator=torch.Generator().manual_seed(0),
            start_criterion=start,
        )

    fitted = search(target)
    assert fitted.init_lim < 24.0 and fitted.initial_criterion <= target
    assert fitted.initial_criterion == pytest.approx(
        start_criterion_of(model, first, shape, fitted.init_lim), rel=1e-4
    )
    assert start_criterion_of(model, first, shape, 2 * fitted.init_lim) > target
    as_given = search(None)
    assert as_given.init_lim == 24.0
    assert as_given.initial_criterion == pytest.approx(too_big, rel=1e-4)


@pytest.mark.parametrize(("option", "value"), [("start_criterion", 0.3), ("warm_start", True)])
def test_start_options_need_a_learned_noise(option: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        ANF(noise="random", **{option: value})  # type: ignore[arg-type]
    assert info.value.field == f"model.method.init_args.{option}"


def test_a_warm_start_in_the_nullspace_is_kept_as_it_is(
    trained: tuple[NormalizedViT, torch.Tensor],
) -> None:
    """A start that already passes the eps test needs no update: the search returns it."""
    model, x = trained
    shape = noise_shape(model, x, "token")
    gen = torch.Generator().manual_seed(0)
    same = x[:32]
    first = synthesize_noise(
        model, itertools.repeat(same), shape, eps=0.03, max_steps=150, generator=gen
    )
    assert first.reached and first.steps > 0
    warm = synthesize_noise(
        model, itertools.repeat(same), shape, eps=0.03, max_steps=150, start=first.noise
    )
    assert warm.reached and warm.steps == 0
    assert warm.init_lim == pytest.approx(float(first.noise.abs().max()))
    torch.testing.assert_close(warm.noise, first.noise)
