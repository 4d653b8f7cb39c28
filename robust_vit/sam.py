"""Sharpness-aware minimisation (Foret et al. 2021) and its adaptive form ASAM (Kwon et al. 2021).

A wrapper optimiser: it builds the base optimiser over the same param groups, perturbs the weights
to the local worst case (``first_step``), and after the caller's second forward/backward restores
them exactly and lets the base optimiser step (``second_step``). Pure torch, usable without
Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from robust_vit.errors import ConfigError

OptimizerFactory = Callable[[Any], Optimizer]
ASAM_ETA = 0.01


class SAM(Optimizer):
    """SAM around any base optimiser; parameters without a gradient are left alone.

    ``rho`` and ``adaptive`` are param-group defaults, so groups may differ. The base optimiser
    shares the groups and the state, so ``state_dict`` holds its momentum and learning-rate
    schedulers may attach to either.

    Args:
        params: parameters or param groups to optimise.
        base_optimizer: builds the base optimiser from param groups (``OptimizerCallable``).
        rho: radius of the weight perturbation (ASAM: of the weight-scaled one).
        adaptive: ASAM: scale the perturbation elementwise by ``|w| + 0.01``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: OptimizerFactory,
        rho: float = 0.05,
        adaptive: bool = False,
    ) -> None:
        if rho < 0:
            raise ConfigError("rho", f"must be non-negative, got {rho}.")
        super().__init__(params, {"rho": rho, "adaptive": adaptive})
        self.base_optimizer = base_optimizer(self.param_groups)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self._backup: dict[Tensor, Tensor] = {}

    def _scale(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        return p.abs() + ASAM_ETA if group["adaptive"] else torch.ones_like(p)

    def _grad_norm(self) -> Tensor:
        norms = [
            (self._scale(p, group) * p.grad).norm(2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.zeros(())
        return torch.stack(norms).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save w and move to w + e(w), e = rho * s^2 * g / ||s * g|| (s = 1, or |w| + eta)."""
        grad_norm = self._grad_norm()
        self._backup = {}
        for group in self.param_groups:
            factor = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._backup[p] = p.detach().clone()
                p.add_(self._scale(p, group).pow(2) * p.grad * factor.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by :meth:`first_step`, bit for bit."""
        for p, saved in self._backup.items():
            p.copy_(saved)
        self._backup = {}

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and take the base step with the gradient computed at w + e(w)."""
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """After the first backward: perturb, run ``closure`` (forward/backward at w + e), step."""
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and its gradient.")
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        loss = closure()
        self.second_step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state, then re-share the groups and state with the base optimiser."""
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state
