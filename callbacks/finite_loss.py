"""Stop a run at the first non-finite loss, keeping the last checkpoint with good weights."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from robust_vit.errors import TrainingFault


class FiniteLossGuard(L.Callback):
    """Stop the run, naming the step, when a loss about to be backpropagated is NaN or infinite.

    It raises :class:`~robust_vit.errors.TrainingFault`. The check runs before the backward pass
    (automatic and manual optimisation alike), so the weights are those of the last finite step.
    When they are finite, a checkpoint callback with ``save_on_exception`` saves them; when an
    earlier step already broke them, exception saving is switched off, so that ``last.ckpt``
    stays the last checkpoint with finite weights.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        """Check the loss; on failure, protect the checkpoints and stop the run."""
        if bool(torch.isfinite(loss.detach()).all()):
            return
        weights_ok = all(bool(torch.isfinite(p).all()) for p in pl_module.parameters())
        if not weights_ok:
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint):
                    callback.save_on_exception = False
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none yet"
        value = float(loss.detach().float().flatten()[0])
        state = "finite" if weights_ok else "non-finite (not checkpointed)"
        raise TrainingFault(
            f"the training loss is {'nan' if math.isnan(value) else value} at global step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}); the weights are {state}. "
            f"Last checkpoint: {last}. Lower the learning rate or check the inputs, then resume "
            "with --ckpt_path <a checkpoint with finite weights>."
        )
