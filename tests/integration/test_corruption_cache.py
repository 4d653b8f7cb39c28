"""The corruption cache through the real CLI: one folder per content, settled before compute."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from application.cli import main
from datamodules.corruptions import load_cifar_c
from tests.fakes import SLICE, write_fashion_mnist, write_idx
from tests.integration.test_eval_cli import base_args

pytest.importorskip("imagecorruptions")


def suite(tmp_path: Path, stages: str = "[test]") -> list[str]:
    """A CorruptionEval of two corruptions on 10 images, cached in ``tmp_path / 'cache'``."""
    path = tmp_path / f"corruptions_{len(list(tmp_path.glob('corruptions_*')))}.yaml"
    path.write_text(
        "trainer:\n  inference_mode: false\n  callbacks+:\n"
        "    - class_path: callbacks.CorruptionEval\n      init_args:\n"
        "        corruptions: [contrast, pixelate]\n        num_examples: 10\n"
        f"        stages: {stages}\n        cache_dir: {tmp_path / 'cache'}\n"
    )
    return ["--config", str(path)]


def corruption_record(tmp_path: Path, name: str) -> dict:
    (path,) = (tmp_path / "runs" / name).rglob("results.json")
    return json.loads(path.read_text())["corruptions"]["test"]


def test_another_size_and_channels_get_their_own_cache(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["test", *base_args(fmnist_dir, "grey32"), *suite(tmp_path)])
    rgb = ["--data.init_args.img_size=56", "--data.init_args.in_chans=3"]
    main(["test", *base_args(fmnist_dir, "rgb56"), *rgb, *suite(tmp_path)])
    grey, colour = (corruption_record(tmp_path, n) for n in ("grey32", "rgb56"))
    assert grey["source"] != colour["source"]
    assert sorted(str(p) for p in (tmp_path / "cache").iterdir()) == sorted(
        [grey["source"], colour["source"]]
    )
    for record, shape in ((grey, (10, 32, 32, 1)), (colour, (10, 56, 56, 3))):
        assert record["n"] == 10 and set(record["accuracy"]) == {"contrast", "pixelate"}
        assert load_cifar_c(record["source"], "pixelate", 3)[0].shape == shape


def test_other_images_of_the_same_shape_are_not_served_the_cached_set(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    inverted = write_fashion_mnist(tmp_path / "inverted")
    write_idx(inverted / "t10k-images-idx3-ubyte.gz", 255 - np.load(SLICE)["x_test"])
    main(["test", *base_args(fmnist_dir, "plain"), *suite(tmp_path)])
    main(["test", *base_args(inverted, "inverted"), *suite(tmp_path)])
    main(["test", *base_args(fmnist_dir, "again"), *suite(tmp_path)])
    plain, other, again = (corruption_record(tmp_path, n) for n in ("plain", "inverted", "again"))
    assert plain["source"] != other["source"] and again["source"] == plain["source"]
    assert len(list((tmp_path / "cache").iterdir())) == 2
    first, second = (load_cifar_c(r["source"], "contrast", 1)[0] for r in (plain, other))
    assert first.shape == second.shape and not np.array_equal(first, second)


def test_too_small_images_are_refused_before_training(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                *base_args(fmnist_dir, "small"),
                "--data.init_args.img_size=16",
                "--trainer.max_epochs=1",
                *suite(tmp_path, stages="[fit]"),
            ]
        )
    assert exit_info.value.code == 2
    assert "robust-vit: error: data.img_size:" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
