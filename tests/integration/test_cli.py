"""The real entry point on the real YAMLs: parse, compose, run one batch, write the record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from application.cli import main
from lightning_modules import ViTClassifier
from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL

CPU_BASE = [
    "--config",
    str(EXPERIMENTS / "base.yaml"),
    "--config",
    str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
    "--config",
    str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
]


def tiny_overrides(data_dir: Path) -> list[str]:
    return [
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.batch_size=16",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


def run(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cwd)
    main(args)


def records_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


def test_fit_then_test_writes_one_record(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "method" / "erm.yaml"),
            *tiny_overrides(fmnist_dir),
            "--trainer.max_epochs=1",
            "--test_after_fit=true",
            "--name=smoke",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / "smoke")
    assert record["fit"]["metrics"]["val/acc"] >= 0.0
    assert 0.0 <= record["test"]["metrics"]["test/acc"] <= 1.0
    assert record["run"]["seed"] == 0
    assert record["run"]["config"]["model"]["model_name"] == "vit_tiny_patch16_224"
    assert record["run"]["versions"]["torch"]
    assert Path(record["run"]["checkpoints"]["last"]).is_file()


def test_linked_sizes_come_from_the_data(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(
        [
            "fit",
            *CPU_BASE,
            *tiny_overrides(fmnist_dir),
            "--data.init_args.img_size=40",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
        ],
        tmp_path,
        monkeypatch,
    )
    (hparams,) = tmp_path.rglob("hparams.yaml")
    text = hparams.read_text()
    assert "img_size: 40" in text and "in_chans: 1" in text and "num_classes: 10" in text


def test_pretrain_export_then_finetune_from_weights(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "artifacts" / "vit_cpu_fashion_mnist.safetensors"
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "pretrain.yaml"),
            *tiny_overrides(fmnist_dir),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
        ],
        tmp_path,
        monkeypatch,
    )
    assert weights.is_file()
    assert_weights_match_best_checkpoint(weights, tmp_path / "runs" / "pretrain")
    run(
        [
            "fit",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "finetune.yaml"),
            *tiny_overrides(fmnist_dir),
            f"--model.weights={weights}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
        ],
        tmp_path,
        monkeypatch,
    )
    (finetune,) = records_under(tmp_path / "runs" / "finetune")
    assert finetune["run"]["config"]["model"]["weights"] == str(weights)
    assert "test/acc" in finetune["test"]["metrics"]


def assert_weights_match_best_checkpoint(weights: Path, run_root: Path) -> None:
    """The exported file, loaded through timm's local-file path, gives the checkpoint's logits."""
    (ckpt_file,) = [p for p in run_root.rglob("*.ckpt") if p.name != "last.ckpt"]
    state = torch.load(ckpt_file, map_location="cpu", weights_only=True)["state_dict"]
    reference = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=json.loads(TINY_MODEL),
    )
    reference.load_state_dict(state)
    loaded = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=json.loads(TINY_MODEL),
        weights=str(weights),
    )
    x = torch.rand(4, 1, 32, 32)
    assert torch.equal(reference.eval()(x), loaded.eval()(x))


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("--model.model_name=vit_does_not_exist", "model.model_name"),
        ("--data.init_args.data_dir=/no/such/dir", "data.data_dir"),
        ("--model.weights=/no/such/file.safetensors", "model.weights"),
    ],
)
def test_bad_values_fail_before_training_naming_the_field(
    override: str,
    field: str,
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", *CPU_BASE, *tiny_overrides(fmnist_dir), override], tmp_path, monkeypatch)
    assert exit_info.value.code == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unknown_config_key_is_rejected(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        run(
            ["fit", *CPU_BASE, *tiny_overrides(fmnist_dir), "--model.no_such_option=1"],
            tmp_path,
            monkeypatch,
        )
    assert "no_such_option" in capsys.readouterr().err


def test_console_script_and_module_entry_points() -> None:
    for cmd in (["robust-vit", "--help"], [sys.executable, "-m", "robust_vit", "--help"]):
        exe = Path(sys.executable).parent / cmd[0] if cmd[0] == "robust-vit" else None
        argv = [str(exe), *cmd[1:]] if exe else cmd
        out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=True).stdout
        assert "fit" in out and "test" in out and "predict" in out


def test_report_prints_a_markdown_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "runs" / "a" / "version_0"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"test": {"metrics": {"test/acc": 0.875}}}))
    main(["report", str(tmp_path / "runs"), "--latest"])
    out = capsys.readouterr().out
    assert "| test/acc |" in out and "0.8750" in out


def test_last_checkpoint_follows_every_epoch(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lr 0: val/acc never improves after epoch 0, so only last.ckpt can hold epoch 1
    run(
        [
            "fit",
            *CPU_BASE,
            *tiny_overrides(fmnist_dir),
            "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=2",
            "--model.optimizer.init_args.lr=0.0",
            "--name=last",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / "last")
    last = torch.load(record["run"]["checkpoints"]["last"], map_location="cpu", weights_only=True)
    best = torch.load(record["run"]["checkpoints"]["best"], map_location="cpu", weights_only=True)
    assert Path(record["run"]["checkpoints"]["last"]).name == "last.ckpt"
    assert (best["epoch"], last["epoch"]) == (0, 1)
