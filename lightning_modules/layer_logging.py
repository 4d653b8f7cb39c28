"""Log per-layer sharpness scores: scalars, a table and a bar chart (matplotlib Agg)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robust_vit.records import save_figure_atomic


def plot_layer_scores(scores: dict[str, float], selected: list[str], path: Path,
                      title: str = "Layer sharpness") -> Path:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path, dpi=100)
    return path


def log_layer_scores(trainer: L.Trainer, scores: dict[str, float], selected: list[str],
                     key: str, epoch: int) -> Path:
    """Write the chart under ``<log_dir>/sharpness/`` and send table and chart to the loggers.

    Call it on every rank (``trainer.log_dir`` is a collective under DDP); only rank zero writes.
    Loggers with ``log_table``/``log_image`` (wandb) get both; every logger gets the scalars
    the caller logs through ``LightningModule.log``.
    """
    folder = Path(trainer.log_dir or trainer.default_root_dir) / "sharpness"
    path = folder / f"{key}_{epoch:03d}.png"
    if not trainer.is_global_zero:
        return path
    plot_layer_scores(scores, selected, path, title=f"{key}, epoch {epoch}")
    rows = [[name, float(score), name in selected] for name, score in scores.items()]
    for logger in trainer.loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key=f"{key}/table", columns=["layer", "score", "selected"], data=rows)
        if hasattr(logger, "log_image"):
            logger.log_image(key=f"{key}/chart", images=[str(path)])
    return path
