"""TRADES' inner-attack start: x + 0.001 N(0, 1) by default (Zhang et al.'s code), or uniform.

Both are drawn from the global CPU generator (the one a resumed run restores), so re-seeding it
and drawing again gives the expected start exactly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules import TRADES, ViTClassifier
from lightning_modules.methods.trades import kl_to_clean
from robust_vit.errors import ConfigError

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}
EPS = 8 / 255


def tiny(method: TRADES) -> tuple[ViTClassifier, torch.Tensor, torch.Tensor]:
    """A tiny ViT with ``method``, images, and the clean probabilities the attack ascends from."""
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    module = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=TINY,
        method=method,
    )
    with torch.no_grad():
        p_clean = F.softmax(module(x), dim=1)
    return module, x, p_clean


def attack(method: TRADES, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean images and the method's inner attack, the global generator seeded first."""
    module, x, p_clean = tiny(method)
    torch.manual_seed(seed)
    return x, method.attack(module, x, p_clean, loss_fn=kl_to_clean)


def test_default_start_is_x_plus_a_thousandth_of_a_standard_normal() -> None:
    x, start = attack(TRADES(eps=EPS, steps=0))
    torch.manual_seed(5)
    assert torch.equal(start, x + 0.001 * torch.randn(x.shape))
    assert abs((start - x).std().item() - 0.001) < 1e-4  # not uniform in the ball (std eps/sqrt 3)


def test_default_first_gradient_is_taken_at_the_reference_start() -> None:
    method = TRADES(eps=EPS, alpha=2 / 255, steps=1)
    module, x, p_clean = tiny(method)
    seen: list[torch.Tensor] = []
    hook = module.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    torch.manual_seed(5)
    x_adv = method.attack(module, x, p_clean, loss_fn=kl_to_clean)
    hook.remove()
    torch.manual_seed(5)
    assert torch.equal(seen[0], x + 0.001 * torch.randn(x.shape))
    assert (x_adv - x).abs().max() <= EPS + 1e-7 and 0 <= x_adv.min() and x_adv.max() <= 1


def test_uniform_start_is_uniform_in_the_ball() -> None:
    x, start = attack(TRADES(eps=EPS, steps=0, start="uniform"))
    torch.manual_seed(5)
    expected = (x + (torch.rand(x.shape) * 2 - 1) * EPS).clamp(0, 1)
    torch.testing.assert_close(start, expected, rtol=0, atol=1e-7)
    assert (start - x).std() > 0.01  # eps / sqrt(3) is 0.018


def test_without_random_init_the_attack_starts_at_x_and_start_is_rejected() -> None:
    x, start = attack(TRADES(eps=EPS, steps=0, random_init=False))
    assert torch.equal(start, x)
    assert TRADES(random_init=False).start is None and TRADES().start == "reference"
    for choice in ("reference", "uniform"):
        with pytest.raises(ConfigError, match=r"model\.method\.init_args\.start"):
            TRADES(random_init=False, start=choice)
