"""Figures sent to the loggers: drawn once into the run folder, on rank zero, to image loggers."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lightning_modules.logger_media import log_png
from robust_vit.plots import anf_rounds, robust_curve

PNG = b"\x89PNG\r\n\x1a\n"
ROUNDS = [
    {"round": r, "noise_norm": 3.0 - r, "synth_reached": float(r > 0), "synth_agreement": 0.9}
    for r in range(3)
]


class ImageLogger:
    """Records the images it is sent, as wandb's logger would log them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def log_image(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def trainer(tmp_path: Path, loggers: list[object], rank_zero: bool = True) -> Any:
    return SimpleNamespace(
        loggers=loggers, log_dir=str(tmp_path), default_root_dir="unused", is_global_zero=rank_zero
    )


def draw(path: Path) -> Path:
    return anf_rounds(ROUNDS, path, "rounds")


def test_rank_zero_draws_into_the_log_dir_and_sends_image_loggers_the_file(tmp_path: Path) -> None:
    images, csv_like = ImageLogger(), SimpleNamespace()
    path = log_png(
        trainer(tmp_path, [csv_like, images]),
        Path("sub") / "a.png",
        "k/plot",
        draw,
        caption="two layers",
    )
    assert path == tmp_path / "sub" / "a.png"
    assert path.read_bytes().startswith(PNG)
    assert images.calls == [{"key": "k/plot", "images": [str(path)], "caption": ["two layers"]}]


def test_other_ranks_and_runs_without_loggers_draw_nothing(tmp_path: Path) -> None:
    images = ImageLogger()
    path = log_png(trainer(tmp_path, [images], rank_zero=False), "a.png", "k", draw)
    assert path == tmp_path / "a.png" and not path.exists() and not images.calls
    assert log_png(trainer(tmp_path, []), "a.png", "k", draw) is None
    assert not list(tmp_path.iterdir())


def test_robust_curve_gives_a_train_and_a_validation_line_by_epoch() -> None:
    point = partial(dict, val={"robust": {"acc": 0.4}})
    curve = [point(epoch=0, train={"robust": {"acc": 0.3}}), point(epoch=1)]
    assert robust_curve(curve) == {"train robust": [(0, 0.3)], "val robust": [(0, 0.4), (1, 0.4)]}
