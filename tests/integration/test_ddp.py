"""experiments/ddp.yaml on two CPU processes (gloo): the real multi-process path, no speed-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL


@pytest.mark.ddp
@pytest.mark.parametrize("method", ["erm", "anf", "safer"])
def test_two_process_cpu_ddp_fit_and_test(method: str, tmp_path: Path, fmnist_dir: Path) -> None:
    layers = ["base.yaml", "data/fashion_mnist.yaml", "model/vit_cpu.yaml", f"method/{method}.yaml",
              "ddp.yaml"]
    args = [sys.executable, "-m", "robust_vit", "fit"]
    for layer in layers:
        args += ["--config", str(EXPERIMENTS / layer)]
    args += [f"--model.model_kwargs={TINY_MODEL}", f"--data.init_args.data_dir={fmnist_dir}",
             "--data.init_args.batch_size=16", "--trainer.accelerator=cpu", "--trainer.devices=2",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
             "--trainer.enable_progress_bar=false", "--test_after_fit=true", "--threads=1",
             f"--name={method}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (record_file,) = (tmp_path / "runs" / method).rglob("results.json")
    record = json.loads(record_file.read_text())
    assert record["run"]["world_size"] == 2
    assert 0.0 <= record["test"]["metrics"]["test/acc"] <= 1.0
