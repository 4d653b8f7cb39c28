"""Attacks on a small trained ViT: the checks AutoAttack's checks.py makes, as assertions."""

from __future__ import annotations

import pytest
import torch

from robust_vit.attacks import (
    APGD,
    CLEAN,
    FGSM,
    PGD,
    WORST,
    apgd,
    eval_mode,
    fgsm,
    pgd,
    run_suite,
    wilson_interval,
)
from tests.trained import Trained, trained  # noqa: F401

N = 48
EPS = 8 / 255


def batch(t: Trained, n: int = N) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return t.x[:n], t.y[:n], torch.arange(n)


ATTACKS = [
    FGSM(eps=EPS),
    PGD(eps=EPS, steps=5),
    PGD(eps=0.5, steps=5, norm="l2", restarts=2),
    APGD(eps=EPS, steps=8),
    APGD(eps=EPS, loss="dlr", steps=8, targets=2),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_eps_zero_returns_the_input(trained: Trained, attack) -> None:  # noqa: F811
    x, y, seeds = batch(trained, 16)
    assert torch.equal(attack.with_eps(0.0)(trained.model, x, y, seeds).x_adv, x)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_examples_stay_in_the_ball_and_in_the_unit_box(trained: Trained, attack) -> None:  # noqa: F811
    x, y, seeds = batch(trained)
    x_adv = attack(trained.model, x, y, seeds).x_adv
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if attack.norm == "linf" else delta.norm(dim=1)
    assert size.max() <= attack.eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_early_exit_gives_exactly_the_same_examples(trained: Trained, attack) -> None:  # noqa: F811
    x, y, seeds = batch(trained)
    fast = attack(trained.model, x, y, seeds)
    attack.early_exit = False
    slow = attack(trained.model, x, y, seeds)
    attack.early_exit = True
    assert torch.equal(fast.x_adv, slow.x_adv)
    assert torch.equal(fast.robust, slow.robust)


def test_results_do_not_depend_on_the_batch(trained: Trained) -> None:  # noqa: F811
    x, y, seeds = batch(trained)
    attack = PGD(eps=EPS, steps=5)
    whole = attack(trained.model, x, y, seeds).robust
    halves = torch.cat(
        [attack(trained.model, x[i::2], y[i::2], seeds[i::2]).robust for i in (0, 1)]
    )
    order = torch.cat([torch.arange(N)[0::2], torch.arange(N)[1::2]])
    assert torch.equal(whole[order], halves)


def test_accuracy_ordering_clean_fgsm_pgd_worst(trained: Trained) -> None:  # noqa: F811
    x, y, seeds = batch(trained)
    suite = [FGSM(eps=EPS), PGD(eps=EPS, steps=10), APGD(eps=EPS, steps=10, loss="dlr")]
    flags = run_suite(trained.model, x, y, suite, seeds)
    acc = {k: v.float().mean().item() for k, v in flags.items()}
    assert acc[CLEAN] > 0.3, "the test model should be clearly better than chance"
    assert acc[CLEAN] >= acc["fgsm_linf"] >= acc["pgd10_linf"] >= acc[WORST]
    assert acc[CLEAN] > acc[WORST]
    assert torch.equal(
        flags[WORST],
        flags[CLEAN] & flags["fgsm_linf"] & flags["pgd10_linf"] & flags["apgd-dlr_linf"],
    )


def test_attacks_leave_model_mode_and_parameter_grads_alone(trained: Trained) -> None:  # noqa: F811
    x, y, seeds = batch(trained, 8)
    model = trained.model
    model.train()
    try:
        for attack in ATTACKS:
            attack(model, x, y, seeds)
            assert all(m.training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_functions_return_misclassified_inputs_unchanged(trained: Trained) -> None:  # noqa: F811
    x, y, seeds = batch(trained)
    with eval_mode(trained.model), torch.no_grad():
        wrong = trained.model(x).argmax(1) != y
    assert wrong.any()
    for x_adv in (
        fgsm(trained.model, x, y, eps=EPS, early_exit=True),
        pgd(trained.model, x, y, eps=EPS, alpha=EPS / 4, steps=3, early_exit=True, seeds=seeds),
        apgd(trained.model, x, y, eps=EPS, steps=4, seeds=seeds),
    ):
        assert torch.equal(x_adv[wrong], x[wrong])


def test_training_pgd_has_nonzero_input_gradients_and_moves(trained: Trained) -> None:  # noqa: F811
    x, y, _ = batch(trained, 8)
    x_adv = pgd(
        trained.model,
        x,
        y,
        eps=EPS,
        alpha=EPS / 4,
        steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert (x_adv - x).abs().amax() > EPS / 2


def test_wilson_interval_contains_the_estimate_and_shrinks_with_n() -> None:
    lo, hi = wilson_interval(30, 100)
    assert lo < 0.3 < hi
    lo2, hi2 = wilson_interval(300, 1000)
    assert hi2 - lo2 < hi - lo
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
