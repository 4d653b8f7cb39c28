"""Optional oracles: our PGD against torchattacks.PGD, our APGD-CE against pyautoattack's APGD.

Same trained model, same examples, same budget: ours must not be weaker beyond sampling noise
(1.96 binomial standard errors of the oracle's robust accuracy). Skipped when an oracle is absent.
"""

from __future__ import annotations

import math

import pytest
import torch

from robust_vit.attacks import APGD, PGD, eval_mode
from tests.trained import Trained, trained  # noqa: F401

N = 64
EPS = 8 / 255


def noise_margin(acc: float, n: int) -> float:
    return 1.96 * math.sqrt(max(acc * (1 - acc), 1 / n) / n)


def robust_acc(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with eval_mode(model), torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def test_pgd_at_least_as_strong_as_torchattacks(trained: Trained) -> None:  # noqa: F811
    torchattacks = pytest.importorskip("torchattacks")
    x, y = trained.x[:N], trained.y[:N]
    torch.manual_seed(0)
    theirs = robust_acc(
        trained.model,
        torchattacks.PGD(trained.model, eps=EPS, alpha=EPS / 4, steps=10, random_start=True)(x, y),
        y,
    )
    ours = PGD(eps=EPS, steps=10, rel_step=0.25)(trained.model, x, y, torch.arange(N))
    assert ours.robust.float().mean().item() <= theirs + noise_margin(theirs, N)


def test_apgd_ce_at_least_as_strong_as_pyautoattack(trained: Trained) -> None:  # noqa: F811
    autopgd = pytest.importorskip("pyautoattack.autopgd_base")
    x, y = trained.x[:N], trained.y[:N]
    oracle = autopgd.APGDAttack(
        trained.model,
        n_iter=20,
        norm="Linf",
        n_restarts=1,
        eps=EPS,
        seed=0,
        loss="ce",
        device=torch.device("cpu"),
    )
    with eval_mode(trained.model):
        theirs = robust_acc(trained.model, oracle.perturb(x, y), y)
    ours = APGD(eps=EPS, loss="ce", steps=20)(trained.model, x, y, torch.arange(N))
    assert ours.robust.float().mean().item() <= theirs + noise_margin(theirs, N)
