"""Send tables and PNG figures to the loggers that take them (wandb), on rank zero only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L


def log_table(trainer: L.Trainer, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Send a table to every logger with ``log_table``; call it on rank zero."""
    for logger in trainer.loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key=key, columns=columns, data=rows)


def log_png(
    trainer: L.Trainer,
    name: str | Path,
    key: str,
    draw: Callable[[Path], Any],
    caption: str | None = None,
) -> Path | None:
    """Draw a PNG at ``<log_dir>/<name>`` and send it as ``key`` to every logger with ``log_image``.

    The file stays in the run folder, so a CSV-only run keeps its figures too. Call it on every
    rank (``trainer.log_dir`` is a collective under DDP); only rank zero draws and logs. A trainer
    without loggers has no run folder: nothing is drawn and None is returned.

    Args:
        trainer: the running trainer.
        name: the file's path relative to the log dir.
        key: the logged image's key.
        draw: writes the PNG to the path it is given.
        caption: shown under the image in wandb.
    """
    if not trainer.loggers:
        return None
    path = Path(trainer.log_dir or trainer.default_root_dir) / name
    if not trainer.is_global_zero:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(path)
    extra = {"caption": [caption]} if caption else {}
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], **extra)
    return path
