"""The checks of options that reach timm or torch, called from Python rather than the CLI."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from robust_vit.errors import ConfigError
from robust_vit.factory_checks import check_optimizer_factory, check_scheduler_factory
from robust_vit.models import create_vit

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def test_a_refused_optimizer_argument_is_named_and_a_good_one_passes() -> None:
    good = partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)
    check_optimizer_factory(good, "model.optimizer")
    with pytest.raises(ConfigError) as err:
        check_optimizer_factory(partial(torch.optim.AdamW, lr=1e-3, eps=-1.0), "model.optimizer")
    assert err.value.field == "model.optimizer.init_args.eps"


def test_a_schedule_that_makes_the_rate_negative_is_refused() -> None:
    optimizer = partial(torch.optim.SGD, lr=0.1)
    check_scheduler_factory(partial(torch.optim.lr_scheduler.StepLR, step_size=1), optimizer, "s")
    bad = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=-1.0)
    with pytest.raises(ConfigError) as err:
        check_scheduler_factory(bad, optimizer, "model.lr_scheduler")
    assert err.value.field == "model.lr_scheduler.init_args.gamma"


@pytest.mark.parametrize("patch_size", [3, 5, 64])
def test_a_patch_that_does_not_tile_the_image_is_refused_not_cropped(patch_size: int) -> None:
    with pytest.raises(ConfigError) as err:
        create_vit(
            "vit_tiny_patch16_224",
            num_classes=10,
            img_size=32,
            in_chans=1,
            patch_size=patch_size,
            model_kwargs=TINY,
        )
    assert err.value.field == "model.patch_size"


def test_every_divisor_of_the_image_is_a_valid_patch() -> None:
    for patch_size in (2, 4, 8, 16, 32):
        vit = create_vit(
            "vit_tiny_patch16_224",
            num_classes=10,
            img_size=32,
            in_chans=1,
            patch_size=patch_size,
            model_kwargs=TINY,
        )
        assert vit(torch.rand(1, 1, 32, 32)).shape == (1, 10)
