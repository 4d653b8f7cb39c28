"""Training faults through the real CLI: a non-finite loss, an exception mid-epoch, a SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from application.cli import main
from lightning_modules.classifier import ViTClassifier
from lightning_modules.methods import ERM, Batch
from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL

BATCHES = 4  # training batches per epoch


class Faulty(ERM):
    """ERM that goes wrong at one optimizer step (for these tests only).

    Args:
        at_step: the global step at which the fault happens.
        fault: ``nan_loss`` (the loss becomes NaN), ``nan_weights`` (a weight becomes NaN, so the
            loss follows), ``raise`` (a RuntimeError) or ``sigterm`` (the process signals itself).
    """

    def __init__(self, at_step: int = 6, fault: str = "nan_loss") -> None:
        super().__init__()
        self.at_step, self.fault = at_step, fault

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """ERM's step, with the fault injected at ``at_step``."""
        if module.global_step == self.at_step:
            if self.fault == "nan_weights":
                with torch.no_grad():
                    next(module.model.parameters()).fill_(float("nan"))
            elif self.fault == "raise":
                raise RuntimeError("injected failure")
            elif self.fault == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
        out = super().training_step(module, batch, batch_idx)
        if module.global_step == self.at_step and self.fault == "nan_loss":
            out["loss"] = out["loss"] * float("nan")
        return out


def fit_args(data_dir: Path, fault: str, at_step: int, epochs: int = 3) -> list[str]:
    return [
        "fit",
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.batch_size=16",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.limit_train_batches={BATCHES}",
        "--trainer.limit_val_batches=1",
        "--model.method=tests.integration.test_training_faults.Faulty",
        f"--model.method.init_args.fault={fault}",
        f"--model.method.init_args.at_step={at_step}",
        "--name=faults",
    ]


def checkpoints(root: Path) -> dict[str, dict]:
    """Every checkpoint under ``root`` by file name, loaded without executing code."""
    return {
        p.name: torch.load(p, map_location="cpu", weights_only=True) for p in root.rglob("*.ckpt")
    }


def all_finite(checkpoint: dict) -> bool:
    return all(
        bool(torch.isfinite(v).all())
        for v in checkpoint["state_dict"].values()
        if v.is_floating_point()
    )


@pytest.mark.parametrize("fault", ["nan_loss", "nan_weights"])
def test_non_finite_loss_stops_naming_the_step_and_keeps_a_good_checkpoint(
    fault: str,
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    at_step = BATCHES + 2  # mid second epoch, after the first epoch's checkpoint
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(fmnist_dir, fault, at_step))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f"global step {at_step}" in err and "training stopped" in err
    saved = checkpoints(tmp_path / "runs")
    assert "last.ckpt" in saved
    assert all(all_finite(c) for c in saved.values())
    assert saved["last.ckpt"]["global_step"] <= at_step


def test_exception_mid_epoch_leaves_a_checkpoint_to_resume_from(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    at_step = BATCHES + 2
    with pytest.raises(RuntimeError, match="injected failure"):
        main(fit_args(fmnist_dir, "raise", at_step))
    saved = checkpoints(tmp_path / "runs")
    assert saved["last.ckpt"]["global_step"] == at_step
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    main([*fit_args(fmnist_dir, "raise", at_step=-1), f"--ckpt_path={last}"])
    resumed = tmp_path / "runs" / "faults" / "version_1"
    record = json.loads((resumed / "results.json").read_text())
    assert record["fit"]["global_step"] == 3 * BATCHES
    # it went on from the checkpoint: no checkpoint of the steps before it was written again
    assert min(c["global_step"] for c in checkpoints(resumed).values()) > at_step


def test_sigterm_writes_a_checkpoint_and_the_resumed_run_ends_as_if_never_killed(
    tmp_path: Path, fmnist_dir: Path
) -> None:
    """A preempted run (SIGTERM mid-epoch), resumed from its ``last.ckpt``, ends with the weights
    of the same run never interrupted (subprocesses with the same thread count, bit for bit)."""
    at_step = BATCHES + 1
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "robust_vit", *args, "--threads=1"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = cli(*fit_args(fmnist_dir, "sigterm", at_step))
    assert done.returncode == 143, done.stderr[-2000:]
    assert "SIGTERM" in done.stderr
    saved = checkpoints(tmp_path / "runs")
    assert at_step <= saved["last.ckpt"]["global_step"] < 3 * BATCHES
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    resumed = cli(*fit_args(fmnist_dir, "sigterm", at_step=-1), f"--ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = cli(*fit_args(fmnist_dir, "sigterm", at_step=-1))
    assert whole.returncode == 0, whole.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").rglob("results.json"))]
    by_version = {Path(r["run"]["log_dir"]).name: r["fit"] for r in records}
    assert by_version["version_1"]["global_step"] == by_version["version_2"]["global_step"]
    assert by_version["version_1"]["weights_sha256"] == by_version["version_2"]["weights_sha256"]
