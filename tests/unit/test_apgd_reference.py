"""Our APGD run against the reference's (pyautoattack's ``APGDAttack``) on a deterministic problem.

A seeded float64 conv net on random 1x8x8 images, both runs starting at ``x`` (no random start)
and without early exit: the step size of every iteration and the best-loss point must agree. The
step sizes are read, at each forward pass, from the running attack's frame (``eta`` at iteration
``k`` in our ``_run``, ``step_size`` at iteration ``i`` in the reference's ``attack_single_run``),
so neither implementation needs a hook. In the L2 cases our run uses the reference's L2
arithmetic (norms plus a 1e-12 guard): ours (clamped norms) differs in the last digits, and
near-ties of the loss at the sphere turn that into other paths; so the runs differ only in the
step-size rule, momentum and restarts. Skipped when pyautoattack (the ``oracles`` extra) is
absent; the rule itself is also checked directly.
"""

from __future__ import annotations

import importlib
import sys
from types import CodeType

import pytest
import torch
from torch import Tensor, nn

from robust_vit.attacks.core import Norm

ours = importlib.import_module("robust_vit.attacks.apgd")  # the package exports apgd()

N, CLASSES = 32, 10
EPS = {"linf": 8 / 255, "l2": 0.5}


class StepSizeSpy(nn.Module):
    """Wraps a model; at each forward records ``frame[value]`` keyed by ``frame[counter]``."""

    def __init__(self, net: nn.Module, code: CodeType, counter: str, value: str) -> None:
        super().__init__()
        self.net, self.code, self.counter, self.value = net, code, counter, value
        self.trace: dict[int, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code is not self.code:
            frame = frame.f_back
        if frame is not None and self.value in frame.f_locals:
            local = frame.f_locals
            self.trace[int(local[self.counter])] = local[self.value].detach().flatten().clone()
        return self.net(x)


def _l2(t: Tensor) -> Tensor:
    return (t**2).flatten(1).sum(-1).sqrt().view(-1, *[1] * (t.ndim - 1))


def reference_l2_direction(grad: Tensor, norm: Norm) -> Tensor:
    """The reference's L2 step direction, ``grad / (|grad| + 1e-12)``."""
    return grad / (_l2(grad) + 1e-12)


def reference_l2_project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    """The reference's L2 projection, ``delta / (|delta| + 1e-12) * min(eps, |delta|)``."""
    return delta / (_l2(delta) + 1e-12) * _l2(delta).clamp(max=eps)


def problem() -> tuple[nn.Module, Tensor, Tensor]:
    """A fixed float64 conv net, images, and the net's own labels (all start correct)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, CLASSES))
    net = net.double().eval().requires_grad_(False)
    x = torch.rand(N, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


def reference_run(
    net: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, *, norm: str, loss: str, steps: int
) -> tuple[Tensor, list[Tensor]]:
    """The reference's best-loss points from ``x`` and its step size at each iteration."""
    autopgd = pytest.importorskip("pyautoattack.autopgd_base", reason="pyautoattack not installed")
    spy = StepSizeSpy(net, autopgd.APGDAttack.attack_single_run.__code__, "i", "step_size")
    kwargs = {
        "n_iter": steps,
        "norm": {"linf": "Linf", "l2": "L2"}[norm],
        "eps": EPS[norm],
        "device": torch.device("cpu"),
    }
    if target is None:
        attack = autopgd.APGDAttack(spy, loss=loss, **kwargs)
    else:
        attack = autopgd.APGDAttack_targeted(spy, **kwargs)
        attack.y_target = target
    attack.init_hyperparam(x)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its loss record and step sizes use the default dtype
    try:
        x_best, *_ = attack.attack_single_run(x, y, x_init=x)
    finally:
        torch.set_default_dtype(default)
    return x_best, [spy.trace[i] for i in range(steps)]


def our_run(
    net: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, *, norm: str, loss: str, steps: int
) -> tuple[Tensor, list[Tensor]]:
    """Our best-loss points from ``x`` (no early exit) and our step size at each iteration."""
    spy = StepSizeSpy(net, ours._run.__code__, "k", "eta")
    loss_fn = ours.dlr_loss if loss == "dlr" else ours.ce_target_loss
    fooled = torch.zeros(len(x), dtype=torch.bool)
    x_max = ours._run(
        spy,
        x,
        y,
        target,
        torch.zeros_like(x),
        fooled,
        x.clone(),
        eps=EPS[norm],
        steps=steps,
        norm=Norm(norm),
        loss=loss_fn,
        rho=0.75,
        early_exit=False,
    )
    return x_max, [spy.trace[k] for k in range(1, steps + 1)]


CASES = [
    ("linf", "ce", 20, False),
    ("linf", "ce", 100, False),
    ("linf", "dlr", 40, False),
    ("linf", "dlr", 40, True),
    ("l2", "ce", 40, False),
    ("l2", "dlr", 20, False),
]


@pytest.mark.parametrize(("norm", "loss", "steps", "targeted"), CASES)
def test_step_sizes_and_best_points_match_the_reference(
    norm: str, loss: str, steps: int, targeted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x, y = problem()
    with torch.no_grad():
        target = net(x).argsort(1, descending=True)[:, 1] if targeted else None
    ref_best, ref_eta = reference_run(net, x, y, target, norm=norm, loss=loss, steps=steps)
    if norm == "l2":
        monkeypatch.setattr(ours, "direction", reference_l2_direction)
        monkeypatch.setattr(ours, "project", reference_l2_project)
    our_best, our_eta = our_run(net, x, y, target, norm=norm, loss=loss, steps=steps)
    assert torch.stack(ref_eta).unique().numel() > 2  # the step size was halved more than once
    for k, (theirs, mine) in enumerate(zip(ref_eta, our_eta, strict=True), start=1):
        assert torch.equal(mine, theirs), f"step size at iteration {k}"
    torch.testing.assert_close(our_best, ref_best, rtol=0, atol=1e-8)


def test_checkpoint_schedule_is_the_references_integer_windows() -> None:
    assert ours.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert ours.checkpoints(20) == [4, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    assert ours.checkpoints(1) == [1]


def test_halving_rule_counts_at_most_rho_and_needs_no_halving_last_time() -> None:
    increases = torch.tensor([3.0, 4.0, 4.0, 4.0])
    halved_last = torch.tensor([True, True, False, False])
    best, last = torch.tensor([2.0, 1.0, 1.0, 2.0]), torch.ones(4)
    halve = ours.halve_at_checkpoint(increases, 4, 0.75, halved_last, best, last)
    # 3 raises in 4 steps is at most 0.75 * 4: halve; 4 raises halve only when the best loss
    # stalled and the step size was not halved at the previous checkpoint
    assert halve.tolist() == [True, False, True, False]
