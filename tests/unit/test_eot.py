"""EOT: averaged gradients for randomised models, and the refusal of attacks without it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import AdversarialEval
from robust_vit.attacks import APGD, FGSM, PGD, AutoAttack, run_suite
from robust_vit.attacks.core import loss_and_grad
from robust_vit.errors import ConfigError


class Shattered(nn.Module):
    """A linear classifier plus a small, fast-oscillating term redrawn at every forward pass.

    The term moves the logits by at most ``c`` but its input gradient (up to ``c * w``) swamps
    the linear one, with a fresh random direction each pass: one draw's gradient points nowhere
    useful, while its expectation over draws is the linear model's.
    """

    def __init__(self, c: float = 0.02, w: float = 400.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(5, 48, generator=gen) * 0.5)
        self.c, self.w = c, w

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        directions = torch.randn(5, flat.shape[1], device=x.device)
        return flat @ self.weight.T + self.c * torch.sin(self.w * flat @ directions.T)


def labelled(model: nn.Module, n: int = 200) -> tuple[Tensor, Tensor]:
    x = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    with torch.no_grad():
        return x, model(x).argmax(1)


def ce(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def test_eot_is_the_mean_of_that_many_single_draws() -> None:
    model = Shattered()
    x, y = labelled(model, 8)
    torch.manual_seed(3)
    draws = [loss_and_grad(model, x, y, ce) for _ in range(4)]
    torch.manual_seed(3)
    logits, loss, grad = loss_and_grad(model, x, y, ce, eot=4)
    for averaged, parts in zip((logits, loss, grad), zip(*draws, strict=True), strict=True):
        torch.testing.assert_close(averaged, torch.stack(parts).mean(0))


def test_eot_on_a_deterministic_model_is_its_gradient() -> None:
    model = Shattered(c=0.0)
    x, y = labelled(model, 8)
    one, four = loss_and_grad(model, x, y, ce), loss_and_grad(model, x, y, ce, eot=4)
    for a, b in zip(one, four, strict=True):
        torch.testing.assert_close(a, b)


def test_eot_breaks_what_single_draw_gradients_cannot() -> None:
    """PGD with EOT finds far more adversarial examples on the randomised model than PGD
    without (172 vs 140 of 200 robust when written)."""
    model = Shattered()
    x, y = labelled(model)

    def robust(target: nn.Module, eot: int) -> int:
        torch.manual_seed(0)
        attack = PGD(eps=8 / 255, steps=10, eot=eot)
        flags = run_suite(target, x, y, [attack], seeds=torch.arange(len(x)))
        return int(flags["worst_case"].sum())

    assert robust(model, 32) < robust(model, 1) - 15


def test_attack_names_say_eot() -> None:
    assert PGD(eps=0.1, steps=20, eot=20).name == "pgd20-eot20_linf"
    assert APGD(eps=0.1, eot=20).name == "apgd-ce-eot20_linf"
    assert FGSM(eps=0.1).name == "fgsm_linf"


def evaluation(attacks: list[Any]) -> tuple[AdversarialEval, Any]:
    """The callback, and a one-process trainer whose test loader holds 16 examples."""
    callback = AdversarialEval(attacks=attacks, num_examples=16, batch_size=8)
    strategy = SimpleNamespace(reduce_boolean_decision=lambda flag, all=True: flag)
    x, y = labelled(Shattered(), 16)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = SimpleNamespace(
        global_rank=0, world_size=1, strategy=strategy, test_dataloaders=[loader]
    )
    return callback, trainer


class OnCPU(nn.Module):
    """The model as a LightningModule looks to the check: with a ``device``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.device = inner, torch.device("cpu")

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


@pytest.mark.parametrize(
    ("attacks", "refused"),
    [
        ([PGD(eps=8 / 255, steps=2)], "pgd2_linf"),
        ([APGD(eps=8 / 255, steps=2, eot=4), FGSM(eps=8 / 255)], "fgsm_linf"),
    ],
)
def test_a_randomised_model_refuses_attacks_without_eot(attacks: list[Any], refused: str) -> None:
    callback, trainer = evaluation(attacks)
    with pytest.raises(ConfigError, match="eot: 20") as info:
        callback.on_test_start(trainer, OnCPU(Shattered()))  # type: ignore[arg-type]
    assert "AdversarialEval.attacks" in info.value.field
    assert str(info.value).split("defence), and ")[1].split(" take ")[0] == refused


def test_eot_attacks_and_deterministic_models_pass_the_check() -> None:
    callback, trainer = evaluation([PGD(eps=8 / 255, steps=2, eot=4)])
    callback.on_test_start(trainer, OnCPU(Shattered()))  # type: ignore[arg-type]
    callback, trainer = evaluation([PGD(eps=8 / 255, steps=2)])
    callback.on_test_start(trainer, OnCPU(Shattered(c=0.0)))  # type: ignore[arg-type]


def test_autoattack_rand_averages_draws_and_standard_does_not() -> None:
    pytest.importorskip("pyautoattack")
    assert AutoAttack(eps=8 / 255, version="rand").averages_randomness
    assert not AutoAttack(eps=8 / 255).averages_randomness


def test_autoattack_rand_runs_through_the_reference_on_a_randomised_model() -> None:
    """The reference's EOT (20 draws per step) is stronger than one-draw PGD here too."""
    pytest.importorskip("pyautoattack")
    model = Shattered()
    x, y = labelled(model, 64)
    torch.manual_seed(0)
    flags = run_suite(model, x, y, [PGD(eps=8 / 255, steps=10)], seeds=torch.arange(64))
    torch.manual_seed(0)
    rand = run_suite(model, x, y, [AutoAttack(eps=8 / 255, version="rand")])
    assert int(rand["worst_case"].sum()) < int(flags["worst_case"].sum()) - 4
