"""Which weights ``--test_after_fit`` tests, and that the record says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robust_vit.models import state_digest
from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides

BATCHES_PER_EPOCH = 22  # 360 training images of the slice in batches of 16
ERM = ["--config", str(EXPERIMENTS / "method" / "erm.yaml")]


def fit_and_test(
    name: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> dict:
    run(
        [
            "fit",
            *CPU_BASE,
            *ERM,
            *tiny_overrides(fmnist_dir),
            "--test_after_fit=true",
            "--trainer.limit_test_batches=2",
            f"--name={name}",
            *extra,
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / name)
    return record


def test_step_limited_fit_tests_the_final_step(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final_step = BATCHES_PER_EPOCH + 8  # mid-epoch: the last validation ran at step 22
    record = fit_and_test(
        "steps",
        tmp_path,
        fmnist_dir,
        monkeypatch,
        f"--trainer.max_steps={final_step}",
        "--trainer.max_epochs=5",
    )
    assert record["fit"]["global_step"] == final_step
    assert [v["global_step"] for v in record["fit"]["validations"]] == [BATCHES_PER_EPOCH]
    weights = record["test"]["weights"]
    assert weights["rule"] == "last" and weights["monitor"] is None
    assert weights["global_step"] == final_step and weights["epoch"] == 1
    assert torch.load(weights["checkpoint"], weights_only=True)["global_step"] == final_step
    assert record["test"]["weights_sha256"] == record["fit"]["weights_sha256"]


def test_best_rule_tests_the_best_evaluated_checkpoint(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = fit_and_test(
        "best",
        tmp_path,
        fmnist_dir,
        monkeypatch,
        "--test_weights=best",
        "--trainer.max_epochs=3",
        "--trainer.val_check_interval=7",
        "--model.optimizer.init_args.lr=0.01",
    )
    validations = record["fit"]["validations"]
    assert len(validations) == 9  # 3 a epoch, at steps 7, 14, 21 of each
    best = max(validations, key=lambda v: v["metrics"]["val/acc"])
    weights = record["test"]["weights"]
    assert weights["rule"] == "best" and weights["monitor"] == "val/acc"
    assert weights["value"] == best["metrics"]["val/acc"]
    assert (weights["global_step"], weights["epoch"]) == (best["global_step"], best["epoch"])
    saved = torch.load(weights["checkpoint"], weights_only=True)
    assert saved["global_step"] == best["global_step"]
    assert record["test"]["weights_sha256"] == state_digest(saved["state_dict"])


def test_best_rule_without_a_monitor_fails_before_training(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    no_monitor = '[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint"}]'
    with pytest.raises(SystemExit) as exit_info:
        fit_and_test(
            "nomonitor",
            tmp_path,
            fmnist_dir,
            monkeypatch,
            "--test_weights=best",
            f"--trainer.callbacks={no_monitor}",
            "--trainer.max_epochs=1",
        )
    assert exit_info.value.code == 2
    assert (
        "test_weights: 'best' needs a ModelCheckpoint callback with a monitor"
        in capsys.readouterr().err
    )
    assert not list((tmp_path / "runs").rglob("*.ckpt"))
