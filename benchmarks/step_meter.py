"""Training steps metered inside a Lightning fit: synchronised seconds, FLOPs, peak memory."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode


class GlobalScope:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP counts toward ``Global`` only."""

    parents = frozenset({"Global"})

    def __enter__(self) -> None:
        """Nothing to track."""

    def __exit__(self, *args: object) -> None:
        """Nothing to untrack."""


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that counts totals only.

    Its ModuleTracker (FLOPs per module) hooks the backward in a way that fails under
    ``torch.autograd.grad`` to a leaf input, which every attack calls ("A leaf node was passed to
    _will_engine_execute_node"); the totals need none of it.
    """
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = GlobalScope()  # type: ignore[assignment]
    return counter


def synchronize(device: str) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


class StepMeter(L.Callback):
    """Seconds of the timed training steps, FLOPs of one untimed one, peak memory over them.

    Steps ``0 .. warmup - 1`` warm up; the last of them runs under ``FlopCounterMode``. Every
    later step is timed with the device synchronised before and after.
    """

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.seconds: list[float] = []
        self.flops = 0
        self.peak_bytes = 0
        self._calls, self._start = 0, 0.0
        self._counter: FlopCounterMode | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Count FLOPs on the last warm-up step; start the clock (and the peak) after warm-up."""
        synchronize(self.device)
        if self._calls == self.warmup - 1:
            self._counter = flop_counter()
            self._counter.__enter__()
        if self._calls == self.warmup and self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Stop the clock, or close the FLOP count."""
        synchronize(self.device)
        seconds = time.perf_counter() - self._start
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.get_total_flops(), None
        elif self._calls >= self.warmup:
            self.seconds.append(seconds)
            if self.device == "cuda":
                self.peak_bytes = torch.cuda.max_memory_allocated()
        self._calls += 1
