"""Robust validation during fit: the curve in the record, and the best robust checkpoint tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robust_vit.threat import parse_radius
from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides

SMALL = [
    "--trainer.callbacks.init_args.num_examples=40",
    "--trainer.callbacks.init_args.train_examples=30",
    "--trainer.callbacks.init_args.attack.init_args.steps=3",
]


def test_curve_per_epoch_and_best_robust_checkpoint(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "method" / "pgd_at.yaml"),
            "--config",
            str(EXPERIMENTS / "eval" / "robust_validation.yaml"),
            *tiny_overrides(fmnist_dir),
            *SMALL,
            "--trainer.max_epochs=3",
            "--trainer.limit_train_batches=6",
            "--model.optimizer.init_args.lr=0.01",
            "--test_after_fit=true",
            "--test_weights=best",
            "--trainer.limit_test_batches=1",
            "--name=robust",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / "robust")
    section = record["robust_validation"]
    assert section["attack"] == "pgd3_linf" and section["eps"] == pytest.approx(4 / 255, abs=1e-6)
    curve = section["curve"]
    assert [p["epoch"] for p in curve] == [0, 1, 2]
    assert [p["global_step"] for p in curve] == [6, 12, 18]
    for point in curve:
        assert (point["val"]["robust"]["n"], point["train"]["robust"]["n"]) == (40, 30)
        for split in ("val", "train"):
            assert point[split]["robust"]["correct"] <= point[split]["clean"]["correct"]
    logged = [v["metrics"]["val/robust_acc"] for v in record["fit"]["validations"]]
    assert logged == pytest.approx([p["val"]["robust"]["acc"] for p in curve], rel=1e-6)
    assert record["fit"]["metrics"]["train/robust_acc"] == pytest.approx(
        curve[-1]["train"]["robust"]["acc"], rel=1e-6
    )
    best = max(curve, key=lambda p: p["val"]["robust"]["acc"])
    weights = record["test"]["weights"]
    assert (weights["rule"], weights["monitor"]) == ("best", "val/robust_acc")
    assert weights["value"] == pytest.approx(best["val"]["robust"]["acc"], rel=1e-6)
    assert weights["global_step"] == best["global_step"]
    assert Path(weights["checkpoint"]).name.startswith("robust-")
    saved = torch.load(weights["checkpoint"], weights_only=True)
    assert saved["global_step"] == best["global_step"]
    # a run configured with radii written 4/255 and 1/255: exact values, a weights_only checkpoint
    method = record["run"]["config"]["model"]["method"]["init_args"]
    assert (parse_radius(method["eps"]), parse_radius(method["alpha"])) == (4 / 255, 1 / 255)
    assert section["eps"] == 4 / 255


def test_checkpoint_checking_other_epochs_fails_before_training(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(
            [
                "fit",
                *CPU_BASE,
                "--config",
                str(EXPERIMENTS / "eval" / "robust_validation.yaml"),
                *tiny_overrides(fmnist_dir),
                "--trainer.callbacks.init_args.every_n_epochs=2",
                "--name=mismatch",
            ],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 2
    assert (
        "robust_validation.every_n_epochs: is 2 but the ModelCheckpoint" in capsys.readouterr().err
    )
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
