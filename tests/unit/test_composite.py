"""Composite: a weighted sum of methods' losses, and the combinations it refuses."""

from __future__ import annotations

import pytest
import torch

from lightning_modules import ERM, PGDAT, SAFER, TRADES
from lightning_modules.methods import GaussianNoise
from lightning_modules.methods.composite import Composite
from robust_vit.errors import ConfigError
from tests.unit.test_safer import loader, tiny_module

FAST_ATTACK = {"eps": 4 / 255, "alpha": 2 / 255, "steps": 2}


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = next(iter(loader()))
    return x, y


def test_composed_loss_is_the_weighted_sum_of_its_terms_on_a_fixed_batch() -> None:
    terms = [PGDAT(**FAST_ATTACK), GaussianNoise(sigma=0.2), TRADES(beta=3.0, **FAST_ATTACK)]
    weights = [1.0, 0.5, 2.0]
    composite = Composite(terms, weights)
    module = tiny_module(composite)
    fixed = batch()  # drawn once: a loader's iterator takes a seed from the global RNG
    torch.manual_seed(7)
    out = composite.training_step(module, fixed, 0)
    torch.manual_seed(7)  # the terms draw their random starts and noise in the same order
    parts = [term.training_step(module, fixed, 0)["loss"] for term in terms]
    expected = sum(w * part for w, part in zip(weights, parts, strict=True))
    assert torch.allclose(out["loss"], expected, rtol=1e-6, atol=0)
    assert out["loss"].requires_grad
    for name, part in zip(("pgdat", "gaussiannoise", "trades"), parts, strict=True):
        assert torch.equal(out[f"{name}/loss"], part.detach())
    assert torch.equal(out["logits"], module(fixed[0]))  # the first term's clean logits


def test_repeated_methods_get_numbered_names_and_summaries() -> None:
    composite = Composite([GaussianNoise(sigma=0.1), GaussianNoise(sigma=0.3)])
    assert composite.names == ["gaussiannoise1", "gaussiannoise2"]
    assert [t["weight"] for t in composite.summary()["terms"]] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("terms", "weights", "field"),
    [
        (lambda: [ERM()], None, "model.method.init_args.terms"),
        (lambda: [ERM(), SAFER()], None, "model.method.init_args.terms[1]"),
        (lambda: [ERM(), ERM()], [1.0], "model.method.init_args.weights"),
        (lambda: [ERM(), ERM()], [1.0, -1.0], "model.method.init_args.weights"),
    ],
)
def test_combinations_that_make_no_sense_name_the_field(terms, weights, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        Composite(terms(), weights)
    assert error.value.field == field


def test_safer_refuses_a_loss_that_steps_its_own_optimizer() -> None:
    with pytest.raises(ConfigError) as error:
        SAFER(loss=SAFER())
    assert error.value.field == "model.method.init_args.loss"
