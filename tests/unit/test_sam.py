from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
from torch import nn

from robust_vit.errors import ConfigError
from robust_vit.sam import ASAM_ETA, SAM


def make_problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return model, torch.randn(16, 5), torch.randint(0, 3, (16,))


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def sam_step(model: nn.Module, opt: SAM, x: torch.Tensor, y: torch.Tensor) -> None:
    loss_of(model, x, y).backward()
    opt.first_step(zero_grad=True)
    loss_of(model, x, y).backward()
    opt.second_step(zero_grad=True)


def test_rho_zero_sam_step_equals_the_base_step() -> None:
    model, x, y = make_problem()
    reference = copy.deepcopy(model)
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3)
    sam = SAM(model.parameters(), base, rho=0.0)
    sgd = base(reference.parameters())
    for _ in range(3):
        sam_step(model, sam, x, y)
        sgd.zero_grad()
        loss_of(reference, x, y).backward()
        sgd.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_update_matches_a_hand_computed_reference(adaptive: bool) -> None:
    model, x, y = make_problem(1)
    rho, lr = 0.3, 0.5
    w = [p.detach().clone() for p in model.parameters()]
    grads = torch.autograd.grad(loss_of(model, x, y), list(model.parameters()))
    scale = [(p.abs() + ASAM_ETA) if adaptive else torch.ones_like(p) for p in w]
    norm = torch.sqrt(sum(((s * g) ** 2).sum() for s, g in zip(scale, grads, strict=True)))
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for p, s, g in zip(probe.parameters(), scale, grads, strict=True):
            p.add_(rho * s**2 * g / norm)
    grads_at_probe = torch.autograd.grad(loss_of(probe, x, y), list(probe.parameters()))
    expected = [p - lr * g for p, g in zip(w, grads_at_probe, strict=True)]

    opt = SAM(model.parameters(), partial(torch.optim.SGD, lr=lr), rho=rho, adaptive=adaptive)
    sam_step(model, opt, x, y)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e)


def test_closure_step_equals_the_two_explicit_steps() -> None:
    model, x, y = make_problem(2)
    twin = copy.deepcopy(model)
    base = partial(torch.optim.SGD, lr=0.1)
    explicit, closed = SAM(model.parameters(), base), SAM(twin.parameters(), base)
    sam_step(model, explicit, x, y)

    def closure() -> torch.Tensor:
        loss = loss_of(twin, x, y)
        loss.backward()
        return loss

    loss_of(twin, x, y).backward()
    closed.step(closure)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_restore_is_exact_and_params_without_grad_do_not_move() -> None:
    model, x, y = make_problem(3)
    frozen = model[0].weight
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), partial(torch.optim.SGD, lr=0.1), rho=0.5)
    loss_of(model, x, y).backward()
    frozen.grad = None
    opt.first_step()
    assert torch.equal(frozen, before[0])
    assert not torch.equal(model[2].weight, before[2])
    opt.restore()
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


def test_state_dict_round_trip_keeps_the_base_momentum() -> None:
    model, x, y = make_problem(4)
    base = partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    opt = SAM(model.parameters(), base, rho=0.1)
    sam_step(model, opt, x, y)
    restored = SAM(model.parameters(), base, rho=0.1)
    restored.load_state_dict(opt.state_dict())
    assert restored.base_optimizer.state is restored.state
    assert restored.base_optimizer.param_groups is restored.param_groups
    for p in model.parameters():
        assert torch.equal(restored.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
    assert restored.param_groups[0]["rho"] == 0.1


def test_negative_rho_is_a_config_error() -> None:
    model, _, _ = make_problem()
    with pytest.raises(ConfigError, match="rho"):
        SAM(model.parameters(), partial(torch.optim.SGD, lr=0.1), rho=-1.0)


def test_sam_matches_the_pytorch_optimizer_package() -> None:
    """An independent implementation (pytorch-optimizer's SAM, an optional oracle) agrees over
    several steps with a momentum base optimizer."""
    oracle_sam = pytest.importorskip("pytorch_optimizer").SAM
    model, x, y = make_problem(2)
    oracle_model = copy.deepcopy(model)
    ours = SAM(model.parameters(), partial(torch.optim.SGD, lr=0.2, momentum=0.9), rho=0.1)
    oracle = oracle_sam(oracle_model.parameters(), torch.optim.SGD, rho=0.1, lr=0.2, momentum=0.9)
    for _ in range(4):
        sam_step(model, ours, x, y)
        loss_of(oracle_model, x, y).backward()
        oracle.first_step(zero_grad=True)
        loss_of(oracle_model, x, y).backward()
        oracle.second_step(zero_grad=True)
    for p, q in zip(model.parameters(), oracle_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert not torch.equal(next(model.parameters()), make_problem(2)[0][0].weight)
