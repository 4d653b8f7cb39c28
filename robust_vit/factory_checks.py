"""Try the optimizer and scheduler factories once on a dummy parameter, before any compute.

torch checks its hyperparameters (a negative learning rate, betas outside [0, 1), a scheduler
without its length, ...) only when an optimizer or scheduler is built, which Lightning does after
the data is loaded and the model moved. Building both here, on one parameter, turns torch's
refusal into a :class:`~robust_vit.errors.ConfigError` that names the argument, before any compute.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from robust_vit.errors import ConfigError
from robust_vit.schedules import NeedsTotalSteps

# What torch raises for a bad hyperparameter (or a bad combination of them).
REFUSALS = (ValueError, TypeError, ArithmeticError, AssertionError, RuntimeError)
# The scheduler is stepped this many times on a run of this length (cheap: one parameter).
TRIAL_STEPS = 20

OptimizerFactory = Callable[[Any], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


def check_optimizer_factory(factory: OptimizerFactory, field: str) -> None:
    """Build the optimizer on a dummy parameter; torch's refusal names the argument."""
    try:
        factory([dummy_parameter()])
    except ConfigError:
        raise  # already names its field (a range check of the optimizer's own)
    except REFUSALS as err:
        raise refusal(field, factory, err, lambda f: f([dummy_parameter()])) from err


def check_scheduler_factory(
    factory: SchedulerFactory | None, optimizer: OptimizerFactory, field: str
) -> None:
    """Build the scheduler on a dummy optimizer and step it: it must give finite rates >= 0."""
    if factory is None:
        return

    def trial(candidate: SchedulerFactory) -> None:
        for step, rates in enumerate(scheduled_rates(candidate, optimizer([dummy_parameter()]))):
            bad = [rate for rate in rates if not (math.isfinite(rate) and rate >= 0)]
            if bad:
                raise ValueError(f"it sets the learning rate to {bad[0]} at step {step}")

    try:
        trial(factory)
    except ConfigError:
        raise  # already names its field (a range check of the scheduler's own)
    except REFUSALS as err:
        raise refusal(field, factory, err, trial) from err


def scheduled_rates(factory: SchedulerFactory, optimizer: Optimizer) -> list[list[float]]:
    """The learning rates of the first :data:`TRIAL_STEPS` steps of a run that long."""
    scheduler = factory(optimizer)
    if isinstance(scheduler, NeedsTotalSteps):
        scheduler.set_total_steps(TRIAL_STEPS)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a scheduler stepped past its planned total
        for _ in range(TRIAL_STEPS):
            rates.append([float(group["lr"]) for group in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
    return rates


def dummy_parameter() -> nn.Parameter:
    """One trainable scalar with no gradient: an optimizer step leaves it as it is."""
    return nn.Parameter(torch.zeros(1))


def refusal(
    field: str, factory: Callable[..., Any], err: BaseException, trial: Callable[[Any], Any]
) -> ConfigError:
    """The error naming the argument whose default makes ``trial`` pass, else the factory."""
    name = class_name(factory)
    culprit = culprit_argument(factory, trial)
    where = f"{field}.init_args.{culprit}" if culprit else field
    fix = (
        f"Choose a value {name} accepts, or leave {culprit} out for its default."
        if culprit
        else f"Choose arguments {name} accepts."
    )
    return ConfigError(where, f"{name} refused it ({type(err).__name__}: {err}). {fix}")


def culprit_argument(factory: Callable[..., Any], trial: Callable[[Any], Any]) -> str | None:
    """The first keyword of a ``functools.partial`` factory without which ``trial`` passes."""
    if not isinstance(factory, partial):
        return None
    for key in factory.keywords:
        rest = {k: v for k, v in factory.keywords.items() if k != key}
        try:
            trial(partial(factory.func, *factory.args, **rest))
        except REFUSALS:
            continue
        return key
    return None


def class_name(factory: Callable[..., Any]) -> str:
    """The class a factory builds (jsonargparse's partial holds it first), else its own name."""
    if isinstance(factory, partial):
        built = next((a for a in factory.args if isinstance(a, type)), factory.func)
        return getattr(built, "__name__", repr(built))
    return getattr(factory, "__name__", repr(factory))
