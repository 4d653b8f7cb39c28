"""Log per-layer sharpness scores: scalars, a table and a bar chart (drawn by robust_vit.plots)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L

from lightning_modules.logger_media import log_png, log_table
from robust_vit.plots import plot_layer_scores


def log_layer_scores(
    trainer: L.Trainer, scores: dict[str, float], selected: list[str], key: str, epoch: int
) -> Path | None:
    """Write the chart under ``<log_dir>/sharpness/`` and send table and chart to the loggers.

    Call it on every rank (``trainer.log_dir`` is a collective under DDP); only rank zero writes.
    Loggers with ``log_table``/``log_image`` (wandb) get both, the chart captioned with the
    selected layers; every logger gets the scalars the caller logs through
    ``LightningModule.log``.
    """
    path = log_png(
        trainer,
        Path("sharpness") / f"{key}_{epoch:03d}.png",
        f"{key}/chart",
        partial(plot_layer_scores, scores, selected, title=f"{key}, epoch {epoch}"),
        caption=f"epoch {epoch}, selected: {', '.join(selected)}",
    )
    if trainer.is_global_zero:
        rows = [[name, float(score), name in selected] for name, score in scores.items()]
        log_table(trainer, f"{key}/table", ["layer", "score", "selected"], rows)
    return path
