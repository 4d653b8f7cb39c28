"""Sharded evaluation: `robust-vit test` on 2 CPU processes writes the record of 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from application.cli import main
from tests.conftest import EXPERIMENTS, REPO

SUITE = """
trainer:
  inference_mode: false
  callbacks+:
    - class_path: callbacks.AdversarialEval
      init_args:
        num_examples: 30
        batch_size: 8
        epsilons: [0.03137254901960784]
        attacks:
          - class_path: robust_vit.attacks.FGSM
            init_args: {{eps: 0.0}}
          - class_path: robust_vit.attacks.PGD
            init_args: {{eps: 0.0, steps: 3}}
    - class_path: callbacks.CorruptionEval
      init_args:
        num_examples: 9
        batch_size: 4
        corruptions: [contrast, gaussian_noise]
        severities: [1, 3]
        cache_dir: {cache}
"""


def common_args(data_dir: Path, name: str) -> list[str]:
    return [
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.batch_size=50",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--threads=1",
        f"--name={name}",
    ]


def sections(run_dir: Path) -> dict[str, Any]:
    """World size, and the adversarial and corruption sections of the record without timings."""
    (path,) = run_dir.rglob("results.json")
    record = json.loads(path.read_text())
    out: dict[str, Any] = {"world_size": record["run"]["world_size"]}
    for section in ("adversarial", "corruptions"):
        result = dict(record[section]["test"])
        result.pop("seconds")
        out[section] = result
    return out


@pytest.mark.ddp
def test_two_process_evaluation_equals_one_process(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *common_args(fmnist_dir, "train"),
            "--trainer.max_epochs=10",
            "--model.optimizer.init_args.lr=0.003",
            "--trainer.limit_val_batches=1",
        ]
    )
    (ckpt, *_) = sorted((tmp_path / "runs" / "train").rglob("*.ckpt"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(cache=tmp_path / "cache"))
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for name, devices in (
        ("one", ["--trainer.devices=1"]),
        ("two", ["--trainer.devices=2", "--trainer.strategy=ddp"]),
    ):
        args = [
            sys.executable,
            "-m",
            "robust_vit",
            "test",
            *common_args(fmnist_dir, name),
            "--config",
            str(suite),
            *devices,
            f"--ckpt_path={ckpt}",
        ]
        done = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = sections(tmp_path / "runs" / "one"), sections(tmp_path / "runs" / "two")
    assert (one.pop("world_size"), two.pop("world_size")) == (1, 2)
    assert one == two
    adversarial = one["adversarial"]
    (worst_case,) = adversarial["worst_case"].values()
    worst = worst_case["correct"]
    assert 0 < worst < adversarial["clean"]["correct"], "the attacks must flip some predictions"
    assert one["corruptions"]["mean_accuracy"] > 0
    assert one["adversarial"]["n"] == 30 and one["corruptions"]["n"] == 9
