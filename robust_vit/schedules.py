"""Learning-rate schedules whose length is set from the trainer's step count."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from robust_vit.ranges import ClosedUnitInterval, NonNegativeInt, check_ranges


@runtime_checkable
class NeedsTotalSteps(Protocol):
    """A schedule told its horizon (the run's optimizer steps) once the trainer knows it."""

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the schedule's length in optimizer steps."""


class WarmupCosineLR(LambdaLR):
    """Linear warm-up then cosine decay, stepped once per optimizer step.

    Args:
        optimizer: the optimizer whose learning rates are scaled.
        warmup_fraction: share of the run spent warming up linearly from 0.
        min_lr_ratio: the final learning rate as a fraction of the initial one.
        total_steps: the run's length in optimizer steps; the module sets it from the trainer
            when left at 0.
    """

    @check_ranges("model.lr_scheduler.init_args")
    def __init__(
        self,
        optimizer: Optimizer,
        warmup_fraction: ClosedUnitInterval = 0.05,
        min_lr_ratio: ClosedUnitInterval = 0.0,
        total_steps: NonNegativeInt = 0,
    ) -> None:
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        self.total_steps = total_steps
        super().__init__(optimizer, self.factor)

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the schedule's length in optimizer steps."""
        self.total_steps = max(1, int(total_steps))
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * self.factor(self.last_epoch)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier at optimizer step ``step``."""
        total = max(1, self.total_steps)
        warmup = int(self.warmup_fraction * total)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine
