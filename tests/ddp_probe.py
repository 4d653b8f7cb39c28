"""A callback for the DDP tests: each rank saves its module state after every training batch.

After every batch, not only at the end: DDP broadcasts rank 0's buffers at the next forward, so a
buffer that differed between ranks for a step (an ANF noise) would look equal at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch


class RankStateDump(L.Callback):
    """Write ``rank{r}.pt``: the module's state dict (extra state included) at the start of fit
    and after every training batch, in order."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.states: list[dict[str, Any]] = []

    def _keep(self, pl_module: L.LightningModule) -> None:
        self.states.append(
            {
                key: value.detach().cpu().clone() if torch.is_tensor(value) else value
                for key, value in pl_module.state_dict().items()
            }
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._keep(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.states, self.out_dir / f"rank{trainer.global_rank}.pt")


class LoseRank(L.Callback):
    """Kill one rank's process without cleanup at a training step (a lost node, for tests)."""

    def __init__(self, rank: int = 1, at_step: int = 2) -> None:
        self.rank, self.at_step = rank, at_step

    def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.at_step:
            os._exit(9)
