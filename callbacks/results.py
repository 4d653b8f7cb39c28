"""Write each run's machine-readable result record next to its checkpoints."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.trainer.states import TrainerFn

from callbacks.selection import SelectedWeights, find_ledger, given_weights
from robust_vit.models import weights_digest
from robust_vit.records import RECORD_NAME, package_versions, update_record


def record_path(trainer: L.Trainer) -> Path:
    """Where this run's record lives: ``<log_dir>/results.json``.

    Call it on every rank: ``trainer.log_dir`` is a collective (a broadcast) under DDP, so
    calling it from rank zero alone deadlocks.
    """
    return Path(trainer.log_dir or trainer.default_root_dir) / RECORD_NAME


def latest_checkpoint(trainer: L.Trainer) -> str:
    """The most recently written ``last`` checkpoint of any checkpoint callback ("" if none)."""
    candidates = [getattr(cb, "last_model_path", "") for cb in trainer.checkpoint_callbacks]
    candidates += [
        getattr(cb, "best_model_path", "")
        for cb in trainer.checkpoint_callbacks
        if getattr(cb, "monitor", None) is None
    ]
    existing = [p for p in candidates if p and Path(p).is_file()]
    return max(existing, key=lambda p: Path(p).stat().st_mtime, default="")


def trainable_params(trainer: L.Trainer) -> int:
    """Elements of the parameters the optimizers hold at the end of fit (what was trained)."""
    params = {
        id(p): p
        for optimizer in trainer.optimizers
        for group in optimizer.param_groups
        for p in group["params"]
    }
    return sum(p.numel() for p in params.values())


class ResultRecord(L.Callback):
    """Merge the run's config, versions, seed, checkpoints and final metrics into its JSON record.

    Each stage's section also holds ``weights_sha256``, a digest of the module's state at the end
    of the stage, so two runs can be checked for identical weights from their records alone. The
    fit section lists every validation that ran (step, epoch, metrics) and the method's
    ``summary()`` (ANF's rounds, SAFER's selections); the test section says
    which weights it evaluated (``weights``: rule, checkpoint, global_step, epoch, monitor).

    Other callbacks add their own sections to the same file through
    :func:`robust_vit.records.update_record`; reports are built from these files only.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._expected: SelectedWeights | None = None
        self._tested: SelectedWeights | None = None

    def expect_test_weights(self, weights: SelectedWeights) -> None:
        """Say which weights (and by which rule) the next test evaluates."""
        self._expected = weights

    def _start(self, stage: str) -> None:
        self._started[stage] = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the start time."""
        self._start("fit")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the start time and which weights are tested."""
        self._start("test")
        self._tested = self._expected or given_weights(trainer.ckpt_path)
        self._expected = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note the start time of a stand-alone validation run."""
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._start("validate")

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        path = record_path(trainer)
        if trainer.is_global_zero:
            self._write_record(trainer, pl_module, stage, path)

    def _write_record(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, path: Path
    ) -> None:
        config_file = path.parent / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
        ckpt = trainer.checkpoint_callback
        run: dict[str, Any] = {
            "log_dir": str(path.parent.resolve()),
            "seed": int(os.environ.get("PL_GLOBAL_SEED", "-1")),
            "versions": package_versions(),
            "world_size": trainer.world_size,
            "config": config,
        }
        if ckpt is not None and stage == "fit":
            paths = {
                "best": getattr(ckpt, "best_model_path", ""),
                "last": latest_checkpoint(trainer),
            }
            run["checkpoints"] = {k: str(Path(v).resolve()) for k, v in paths.items() if v}
        update_record(path, "run", run)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        started = self._started.get(stage, time.perf_counter())
        section: dict[str, Any] = {
            "metrics": metrics,
            "weights_sha256": weights_digest(pl_module),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 2),
        }
        if stage == "fit":
            ledger = find_ledger(trainer)
            section.update(
                global_step=trainer.global_step,
                epoch=trainer.current_epoch,
                validations=ledger.state_dict()["validations"] if ledger else [],
            )
            section["trainable_params"] = trainable_params(trainer)
            summary = getattr(getattr(pl_module, "method", None), "summary", None)
            if callable(summary):
                section["method"] = summary()
        else:
            weights = self._tested if stage == "test" else given_weights(trainer.ckpt_path)
            section["weights"] = weights.as_record() if weights else None
        update_record(path, stage, section)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the fit's final metrics."""
        self._write(trainer, pl_module, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the test metrics."""
        self._write(trainer, pl_module, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record a stand-alone validation run's metrics."""
        if trainer.state.fn == TrainerFn.VALIDATING and not trainer.sanity_checking:
            self._write(trainer, pl_module, "validate")
