"""PGD-AT, TRADES and SAFER through the real CLI and YAMLs on a tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides

METHOD = EXPERIMENTS / "method"
FAST_ATTACK = ["--model.method.init_args.steps=1", "--trainer.limit_val_batches=1"]
FAST_SAFER = [
    *FAST_ATTACK,
    "--model.method.init_args.score_batches=1",
    "--model.method.init_args.k=2",
]


@pytest.mark.parametrize("method", ["pgd_at", "trades"])
def test_adversarial_baselines_train_one_batch(
    method: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(METHOD / f"{method}.yaml"),
            *tiny_overrides(fmnist_dir),
            *FAST_ATTACK,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            f"--name={method}",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / method)
    assert record["fit"]["global_step"] == 1
    assert math.isfinite(record["fit"]["metrics"]["train/loss"])


def test_safer_resume_restores_the_selection(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [
        "fit",
        *CPU_BASE,
        "--config",
        str(METHOD / "safer.yaml"),
        "--config",
        str(EXPERIMENTS / "eval" / "sharpness.yaml"),
        *tiny_overrides(fmnist_dir),
        *FAST_SAFER,
        "--trainer.limit_train_batches=2",
        "--trainer.callbacks+=callbacks.LayerSharpness",
        "--trainer.callbacks.init_args.num_batches=1",
        "--name=safer",
    ]
    run([*common, "--trainer.max_epochs=1"], tmp_path, monkeypatch)
    (first_ckpt,) = tmp_path.rglob("last.ckpt")
    first = torch.load(first_ckpt, weights_only=False)["state_dict"]["method._extra_state"]
    assert len(first["selected"]) == 2 and first["scored_epoch"] == 0
    record = records_under(tmp_path / "runs" / "safer")[0]
    assert set(record["sharpness"]["epoch_0"]["scores"]) == set(first["scores"])
    assert list((first_ckpt.parents[1] / "sharpness").glob("safer_000.png"))

    run([*common, "--trainer.max_epochs=2", f"--ckpt_path={first_ckpt}"], tmp_path, monkeypatch)
    resumed_ckpt = max(tmp_path.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    resumed = torch.load(resumed_ckpt, weights_only=False)
    state = resumed["state_dict"]["method._extra_state"]
    assert resumed["epoch"] == 1
    assert state["selected"] == first["selected"] and state["scored_epoch"] == 0
    optimizer_params = sum(len(g["params"]) for g in resumed["optimizer_states"][0]["param_groups"])
    assert optimizer_params == 2 * len(first["selected"])  # weight and bias of each linear


@pytest.mark.parametrize(
    "overlay", ["safer_sam_all", "safer_base_optimizer", "safer_random", "safer_static"]
)
def test_safer_ablation_overlays_compose(
    overlay: str,
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
                str(METHOD / "safer.yaml"),
                "--config",
                str(METHOD / f"{overlay}.yaml"),
                *tiny_overrides(fmnist_dir),
                "--print_config",
            ],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "lightning_modules.methods.SAFER" in printed and "fraction: 0.05" in printed


def test_bad_fraction_fails_before_training(
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
                str(METHOD / "safer.yaml"),
                *tiny_overrides(fmnist_dir),
                "--model.method.init_args.fraction=0",
            ],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 2
    assert "model.method.init_args.fraction" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_record_lists_every_selection(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(METHOD / "safer.yaml"),
            *tiny_overrides(fmnist_dir),
            *FAST_SAFER,
            "--trainer.limit_train_batches=2",
            "--trainer.max_epochs=3",
            "--model.method.init_args.reselect_every_n_epochs=1",
            "--name=selections",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / "selections")
    summary = record["fit"]["method"]
    assert summary["num_candidates"] == 6  # qkv, proj, fc1, fc2 of one block, patch_embed, head
    assert [(s["epoch"], s["global_step"]) for s in summary["selections"]] == [
        (0, 0),
        (1, 2),
        (2, 4),
    ]
    assert summary["reselections"] == 2
    assert all(len(s["selected"]) == 2 for s in summary["selections"])
    assert summary["selections"][0]["changed"] is True
