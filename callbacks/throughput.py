"""Training throughput: images per second of each epoch, into the loggers and the record."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from callbacks.results import record_path
from robust_vit.records import update_record


class Throughput(L.Callback):
    """Time every training epoch (validation excluded) and count the images it saw.

    Writes ``train/images_per_s`` to the loggers and the per-epoch list to the record's
    ``throughput`` section, so benchmarks compare runs without scraping logs.
    """

    def __init__(self) -> None:
        self._start = self._end = 0.0
        self._images = 0
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock."""
        self._images = 0
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Count the batch's images; the epoch ends at its last batch (validation excluded)."""
        self._images += len(batch[0])
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Stop the clock and report this rank's rate."""
        seconds = self._end - self._start
        rate = self._images / seconds if seconds > 0 else 0.0
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "images": self._images,
                "seconds": round(seconds, 3),
                "images_per_s": round(rate, 2),
            }
        )
        pl_module.log("train/images_per_s", rate)
        path = record_path(trainer)
        if trainer.is_global_zero:
            update_record(path, "throughput", {"epochs": self.epochs})
