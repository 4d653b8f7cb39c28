"""Which weights a test or an export uses: the final ones, or the best checkpoint evaluated.

A finetuning comparison tests the weights at the end of training (``last``). ``best`` picks the
checkpoint of the monitored :class:`~lightning.pytorch.callbacks.ModelCheckpoint`, chosen only
among validations that actually ran: :class:`ValidationLedger` notes the step of every validation
and the metrics it logged, so a checkpoint written with a value left over from an earlier
validation (or never evaluated at all) is never taken for the best one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from robust_vit.errors import ConfigError, TrainingFault

Rule = Literal["last", "best"]


@dataclass(frozen=True)
class Validation:
    """One validation that ran during fit: where, and the scalar metrics it logged."""

    global_step: int
    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class SelectedWeights:
    """The weights a stage evaluated and the rule that picked them (a record section).

    Attributes:
        rule: ``last`` (end of training), ``best`` (best evaluated ``monitor``), ``ckpt_path``
            (the checkpoint given on the command line) or ``initial`` (the model as built).
        checkpoint: the checkpoint file holding the weights (None: the weights in memory).
        global_step: optimizer steps the weights were trained for (None: unknown).
        epoch: the epoch the weights come from (None: unknown).
        monitor: the metric ``best`` ranked by.
        value: that metric's value at the validation that picked the weights.
    """

    rule: Literal["last", "best", "ckpt_path", "initial"]
    checkpoint: str | None
    global_step: int | None
    epoch: int | None
    monitor: str | None = None
    value: float | None = None

    def as_record(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


class ValidationLedger(L.Callback):
    """Notes every validation of a fit (step, epoch, the metrics it logged); kept in checkpoints.

    A metric counts as logged by a validation when ``trainer.callback_metrics`` holds a new value
    for it at the validation's end; values left from earlier validations are not counted.
    """

    def __init__(self) -> None:
        self.validations: list[Validation] = []
        self._before: dict[str, torch.Tensor] = {}

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember the metric values that exist before this validation."""
        self._before = dict(trainer.callback_metrics)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the validation with the metrics it logged (not the sanity check's)."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        fresh = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if self._before.get(name) is not value and value.numel() == 1
        }
        self.validations.append(Validation(trainer.global_step, trainer.current_epoch, fresh))
        self._before = {}

    def state_dict(self) -> dict[str, Any]:
        """The validations so far, so that a resumed fit still knows them."""
        return {"validations": [asdict(v) for v in self.validations]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the validations of the checkpoint."""
        self.validations = [Validation(**v) for v in state_dict.get("validations", [])]


def find_ledger(trainer: L.Trainer) -> ValidationLedger | None:
    """The trainer's :class:`ValidationLedger`, if it has one."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]  # Lightning sets it per run
    return next((cb for cb in callbacks if isinstance(cb, ValidationLedger)), None)


def monitored_checkpoint(
    trainer: L.Trainer, field: str, monitor: str | None = None
) -> ModelCheckpoint:
    """The ``ModelCheckpoint`` monitoring ``monitor`` (None: the first with any monitor).

    Fails naming ``field`` when there is none.
    """
    for callback in trainer.checkpoint_callbacks:
        if (
            isinstance(callback, ModelCheckpoint)
            and callback.monitor is not None
            and monitor in (None, callback.monitor)
        ):
            return callback
    wanted = f"monitor: {monitor}" if monitor else "a monitor"
    raise ConfigError(
        field,
        f"'best' needs a ModelCheckpoint callback with {wanted} (as in "
        "experiments/base.yaml: monitor: val/acc, mode: max) and validation; use "
        "'last' to take the weights at the end of training.",
    )


def checkpoint_position(path: str) -> tuple[int, int]:
    """``(global_step, epoch)`` stored in a Lightning checkpoint (memory-mapped, no code run)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(checkpoint["global_step"]), int(checkpoint["epoch"])


def final_weights(trainer: L.Trainer) -> SelectedWeights:
    """The weights at the end of training, with a checkpoint that holds them if one does."""
    paths = {getattr(cb, "last_model_path", "") for cb in trainer.checkpoint_callbacks}
    paths |= {
        getattr(cb, "best_model_path", "")
        for cb in trainer.checkpoint_callbacks
        if getattr(cb, "monitor", None) is None
    }
    for path in sorted(p for p in paths if p and Path(p).is_file()):
        step, epoch = checkpoint_position(path)
        if step == trainer.global_step:
            return SelectedWeights("last", str(Path(path).resolve()), step, epoch)
    return SelectedWeights("last", None, trainer.global_step, trainer.current_epoch)


def best_evaluated(
    trainer: L.Trainer,
    field: str,
    monitor: str | None = None,
) -> SelectedWeights:
    """The checkpoint of the best ``monitor`` value among the validations that ran.

    ``monitor`` None takes the first monitored ``ModelCheckpoint``'s. Ties go to the earliest
    validation, as ``ModelCheckpoint`` keeps the first best.
    """
    callback = monitored_checkpoint(trainer, field, monitor)
    monitor = str(callback.monitor)
    ledger = find_ledger(trainer)
    evaluated = [v for v in ledger.validations if monitor in v.metrics] if ledger else []
    if not evaluated:
        raise TrainingFault(
            f"{field}: no validation of this fit logged {monitor!r}, so there is "
            "no best checkpoint; validate during fit or use 'last'."
        )
    sign = 1.0 if callback.mode == "max" else -1.0
    pick = max(evaluated, key=lambda v: sign * v.metrics[monitor])
    for path in callback.best_k_models:
        step, epoch = checkpoint_position(str(path))
        if step == pick.global_step:
            return SelectedWeights(
                "best", str(Path(path).resolve()), step, epoch, monitor, pick.metrics[monitor]
            )
    raise TrainingFault(
        f"{field}: the best {monitor} ({pick.metrics[monitor]:.4g}, validated at "
        f"step {pick.global_step}) has no checkpoint among {callback.dirpath}'s "
        "saved ones; keep the ModelCheckpoint's save_on_train_epoch_end unset."
    )


def select_weights(
    trainer: L.Trainer, rule: Rule, field: str, monitor: str | None = None
) -> SelectedWeights:
    """The weights ``rule`` picks at the end of a fit (``field`` names the option in errors)."""
    return final_weights(trainer) if rule == "last" else best_evaluated(trainer, field, monitor)


def given_weights(ckpt_path: str | Path | None) -> SelectedWeights:
    """The weights of a stand-alone run: the ``--ckpt_path`` checkpoint, or the model as built."""
    if not ckpt_path:
        return SelectedWeights("initial", None, None, None)
    step, epoch = checkpoint_position(str(ckpt_path))
    return SelectedWeights("ckpt_path", str(Path(ckpt_path).resolve()), step, epoch)
