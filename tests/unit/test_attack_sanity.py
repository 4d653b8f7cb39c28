"""Gradient-masking checks: each flags the broken model it is meant for and not a sound one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robust_vit.attacks import (
    FGSM,
    PGD,
    beaten_by_fgsm,
    masking_warnings,
    randomized_forward,
    run_suite,
    zero_input_gradient,
)


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


class NoisyForward(nn.Module):
    """A 'defence' that adds fresh noise to the input even in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = linear_model()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x + 0.1 * torch.randn_like(x))


class Quantized(nn.Module):
    """A 'defence' that rounds the input to 4 levels: its input gradient is zero everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = linear_model()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(torch.round(x * 3) / 3)


def batch() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(16, 3, 4, 4, generator=gen), torch.randint(0, 5, (16,), generator=gen)


def test_a_sound_model_raises_no_flag() -> None:
    model, (x, y) = linear_model(), batch()
    assert not randomized_forward(model, x).any()
    assert not zero_input_gradient(model, x, y).any()


def test_a_randomised_forward_is_flagged_on_every_example() -> None:
    x, _ = batch()
    assert randomized_forward(NoisyForward(), x).all()


def test_zero_input_gradients_are_flagged_and_leave_the_attacks_powerless() -> None:
    model, (x, y) = Quantized(), batch()
    assert zero_input_gradient(model, x, y).all()
    flags = run_suite(model, x, y, [FGSM(eps=0.03), PGD(eps=0.03, steps=5)])
    assert torch.equal(flags["pgd5_linf"], flags["clean"])  # nothing moved: masked, not robust


def test_beaten_by_fgsm_counts_examples_fgsm_breaks_and_the_other_attack_misses() -> None:
    robust = {
        "fgsm": torch.tensor([False, False, True, True]),
        "pgd": torch.tensor([True, False, True, False]),
    }
    assert beaten_by_fgsm(robust, ["fgsm"])["pgd"].tolist() == [True, False, False, False]


def test_warnings_name_each_sign_of_masking() -> None:
    sanity = {
        "randomized_forward": {"examples": 3, "n": 10},
        "zero_input_gradient": {"examples": 0, "n": 10},
    }
    attacks = {
        "fgsm": {"linf@0.1": {"acc": 0.2}, "linf@0.2": {"acc": 0.1}},
        "pgd20": {"linf@0.1": {"acc": 0.3}, "linf@0.2": {"acc": 0.05}},
    }
    warnings = masking_warnings(sanity, attacks, ["fgsm"])
    assert len(warnings) == 2
    assert "randomised on 3/10" in warnings[0]
    assert "pgd20 is weaker than FGSM at linf@0.1" in warnings[1]
    sound = {**sanity, "randomized_forward": {"examples": 0, "n": 10}}
    assert masking_warnings(sound, {"pgd20": attacks["pgd20"]}, []) == []
    assert "try EOT" in warnings[0]
    (averaged,) = masking_warnings(sanity, {"pgd20": attacks["pgd20"]}, [], averaged=True)
    assert "randomised on 3/10" in averaged and "averaged its gradients" in averaged


def test_zero_gradient_check_does_not_change_the_model_mode() -> None:
    model, (x, y) = linear_model(), batch()
    model.train()
    zero_input_gradient(model, x, y)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert F.cross_entropy(model(x), y).isfinite()
