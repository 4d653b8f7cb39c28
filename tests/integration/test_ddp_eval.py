"""Sharded evaluation: `robust-vit test` on 2 CPU processes writes the record of 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from application.cli import main
from robust_vit.outcomes import Outcomes
from tests.conftest import EXPERIMENTS, REPO
from tests.per_example import (
    adversarial_summaries,
    assert_summaries_match,
    corruption_summaries,
    read_per_example,
)

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


def per_example(run_dir: Path, section: str) -> Outcomes:
    """The section's per-example file, checked against the sha256 its record names."""
    (path,) = run_dir.rglob("results.json")
    return read_per_example(
        path.parent, json.loads(path.read_text())[section]["test"]["per_example"]
    )


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
    assert one == two  # the per_example entries too: same file name, n and sha256
    summaries = {"adversarial": adversarial_summaries, "corruptions": corruption_summaries}
    for section, summary in summaries.items():
        single, sharded = (per_example(tmp_path / "runs" / run, section) for run in ("one", "two"))
        assert torch.equal(single.index, sharded.index)
        assert single.index.tolist() == list(range(one[section]["n"]))
        assert single.correct.keys() == sharded.correct.keys()
        assert all(torch.equal(bits, sharded.correct[c]) for c, bits in single.correct.items())
        assert_summaries_match(sharded, summary(two[section]))
    adversarial = one["adversarial"]
    (worst_case,) = adversarial["worst_case"].values()
    worst = worst_case["correct"]
    assert 0 < worst < adversarial["clean"]["correct"], "the attacks must flip some predictions"
    assert one["corruptions"]["mean_accuracy"] > 0
    assert one["adversarial"]["n"] == 30 and one["corruptions"]["n"] == 9
