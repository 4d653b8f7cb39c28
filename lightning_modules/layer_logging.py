"""Log per-layer sharpness scores: scalars, a table and a bar chart (matplotlib Agg)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lightning_modules.logger_media import log_png, log_table
from robust_vit.records import save_figure_atomic


def plot_layer_scores(
    scores: dict[str, float], selected: list[str], path: Path, title: str = "Layer sharpness"
) -> Path:
    """A bar chart of ``scores`` in layer order, the ``selected`` layers highlighted.

    Args:
        scores: layer name to score.
        selected: layers drawn in a second colour.
        path: the PNG file to write.
        title: the chart's title.
    """
    names = list(scores)
    fig = Figure(figsize=(max(4.0, 0.35 * len(names)), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = ["tab:red" if n in selected else "tab:blue" for n in names]
    ax.bar(range(len(names)), [scores[n] for n in names], color=colours)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("score")
    ax.set_title(title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    return path


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
