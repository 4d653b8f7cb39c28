"""A sweep run killed in the middle of its fit resumes from its last checkpoint on restart.

The run is killed for real (SIGKILL, as a preempted machine gives no warning) in its second
epoch; ``robust-vit sweep run`` (what make's recipes, wandb's agent and a SLURM array task call)
restarts it from the first epoch's ``last.ckpt`` and it ends with the weights of the same run
never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from torch import Tensor

from lightning_modules.classifier import ViTClassifier
from lightning_modules.methods import ERM, Batch
from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL
from tests.integration.test_sweep_commands import tiny_weights

BATCHES, EPOCHS = 4, 3  # training batches per epoch, epochs
KILL_AT = "ROBUST_VIT_TEST_KILL_AT_STEP"


class KilledAtStep(ERM):
    """ERM whose process kills itself (SIGKILL) at the step ``$ROBUST_VIT_TEST_KILL_AT_STEP``.

    Without the variable it is ERM: the restart and the uninterrupted run train alike.
    """

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """ERM's step, unless this is the step to die at."""
        if module.global_step == int(os.environ.get(KILL_AT, "-1")):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().training_step(module, batch, batch_idx)


def write_plan(folder: Path) -> Path:
    """A one-run plan of the tiny ViT: 3 epochs of 4 batches, then a one-batch test."""
    weights = tiny_weights(folder / "tiny.safetensors")
    short = folder / "short.yaml"
    trainer = {
        "max_epochs": EPOCHS,
        "limit_train_batches": BATCHES,
        "limit_val_batches": 1,
        "limit_test_batches": 1,
        "accelerator": "cpu",
        "enable_model_summary": False,
    }
    short.write_text(yaml.safe_dump({"trainer": trainer}))
    (folder / "experiments").symlink_to(EXPERIMENTS)  # plans run from the repository root
    plan = folder / "tiny.yaml"
    configs = ("base.yaml", "data/fashion_mnist.yaml", "model/vit_cpu.yaml")
    killable = f"--model.method={__name__}.KilledAtStep"
    plan.write_text(
        yaml.safe_dump(
            {
                "configs": [f"experiments/{name}" for name in configs],
                "fit_configs": ["experiments/finetune.yaml"],
                "methods": ["erm"],
                "seeds": [0],
                "weights": str(weights),
                "eval": str(short),
                "threads": 1,
                "args": [killable],
            }
        )
    )
    return plan


def sweep_run(
    folder: Path, plan: Path, data: Path, *extra: str, kill_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``robust-vit sweep run PLAN --index 0`` in its own process (killed at ``kill_at``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop(KILL_AT, None)
    if kill_at is not None:
        env[KILL_AT] = str(kill_at)
    stand_in = [
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={data}",
        "--data.init_args.batch_size=8",
    ]
    command = ["sweep", "run", str(plan), *extra, "--index", "0", "--", *stand_in]
    return subprocess.run(
        [sys.executable, "-m", "robust_vit", *command],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def saved_steps(folder: Path) -> dict[str, int]:
    """The global step of every checkpoint under ``folder``, by path relative to it."""
    return {
        str(path.relative_to(folder)): torch.load(path, map_location="cpu", weights_only=True)[
            "global_step"
        ]
        for path in folder.rglob("*.ckpt")
    }


def fit_record(folder: Path) -> dict:
    (record,) = folder.rglob("results.json")
    return json.loads(record.read_text())


def test_a_killed_sweep_run_resumes_from_its_last_checkpoint(
    tmp_path: Path, fmnist_dir: Path
) -> None:
    plan = write_plan(tmp_path)
    run_dir = tmp_path / "runs" / "tiny" / "erm" / "seed0"
    kill_step = BATCHES + 2  # in the second epoch, after the first one's last.ckpt

    killed = sweep_run(tmp_path, plan, fmnist_dir, kill_at=kill_step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert saved_steps(run_dir)["version_0/checkpoints/last.ckpt"] == BATCHES
    assert not list(run_dir.glob(".done-*")) and not list(run_dir.rglob("results.json"))

    restarted = sweep_run(tmp_path, plan, fmnist_dir)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "resuming an unfinished fit" in restarted.stdout
    assert "--ckpt_path runs/tiny/erm/seed0/version_0/checkpoints/last.ckpt" in restarted.stdout
    resumed = fit_record(run_dir)
    assert resumed["fit"]["global_step"] == EPOCHS * BATCHES
    assert Path(resumed["run"]["log_dir"]).name == "version_1"
    # it went on from the checkpoint: no checkpoint of the first epoch was written again
    assert min(saved_steps(run_dir / "version_1").values()) > BATCHES
    assert len(list(run_dir.glob(".done-*"))) == 1

    again = sweep_run(tmp_path, plan, fmnist_dir)
    assert "finished" in again.stdout and len(list(run_dir.rglob("results.json"))) == 1

    whole = sweep_run(tmp_path, plan, fmnist_dir, "--name", "whole")
    assert whole.returncode == 0 and "resuming" not in whole.stdout, whole.stderr[-2000:]
    uninterrupted = fit_record(tmp_path / "runs" / "whole")
    assert uninterrupted["fit"]["global_step"] == EPOCHS * BATCHES
    assert resumed["fit"]["weights_sha256"] == uninterrupted["fit"]["weights_sha256"]
