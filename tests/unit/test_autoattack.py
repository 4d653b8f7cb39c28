"""AutoAttack through the reference implementation, as one more attack of our suite."""

from __future__ import annotations

import sys

import pytest
import torch

from robust_vit.attacks import APGD, AutoAttack
from robust_vit.errors import ConfigError
from tests.trained import Trained, trained  # noqa: F401
from tests.unit.test_attack_oracles import noise_margin

N = 32
EPS = 8 / 255


def test_reference_is_no_weaker_than_our_apgd_ce_and_stays_in_the_ball(trained: Trained) -> None:  # noqa: F811
    pytest.importorskip("pyautoattack")
    x, y = trained.x[:N], trained.y[:N]
    rng_state = torch.get_rng_state()
    result = AutoAttack(EPS, version="custom", attacks=["apgd-ce"])(trained.model, x, y)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert all(p.grad is None for p in trained.model.parameters())
    with torch.no_grad():
        assert torch.equal(result.robust, trained.model(result.x_adv).argmax(1) == y)
    assert (result.x_adv - x).abs().max() <= EPS + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    ours = APGD(EPS, loss="ce", steps=20)(trained.model, x, y, torch.arange(N)).robust
    apgd_ce = ours.float().mean().item()
    assert result.robust.float().mean().item() <= apgd_ce + noise_margin(apgd_ce, N)


def test_eps_zero_returns_the_input(trained: Trained) -> None:  # noqa: F811
    pytest.importorskip("pyautoattack")
    x, y = trained.x[:8], trained.y[:8]
    result = AutoAttack(0.0)(trained.model, x, y)
    assert torch.equal(result.x_adv, x)


def test_names_follow_the_version_and_attacks() -> None:
    pytest.importorskip("pyautoattack")
    assert AutoAttack(EPS).name == "autoattack-standard_linf"
    assert (
        AutoAttack(0.5, norm="l2", version="custom", attacks=["square"]).name
        == "autoattack-square_l2"
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"attacks": ["apgd-ce"]}, {"version": "custom"}, {"version": "custom", "attacks": ["pgd"]}],
)
def test_inconsistent_settings_are_refused(kwargs: dict) -> None:
    pytest.importorskip("pyautoattack")
    with pytest.raises(ConfigError, match=r"attacks\.AutoAttack\.attacks"):
        AutoAttack(EPS, **kwargs)


def test_missing_reference_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    with pytest.raises(ConfigError, match=r"pip install robust-vit\[oracles\]"):
        AutoAttack(EPS)
