"""An offline wandb run through the real CLI: plots as media files, the final metrics in its
summary, the sweep's labels, and no connection to any server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXPERIMENTS, REPO
from tests.integration.test_cli import CPU_BASE, tiny_overrides
from tests.wandb_log import final_summary, of_type, read_records

METHOD = "model.method.init_args"
# Every evaluation that draws a plot, each on a few examples.
OVERLAY = """\
trainer:
  inference_mode: false
  callbacks+:
    - class_path: callbacks.AdversarialEval
      init_args:
        num_examples: 20
        epsilons: [0.0078431, 0.0156863]
        attacks: [{class_path: robust_vit.attacks.FGSM, init_args: {eps: 0.0}}]
    - class_path: callbacks.CorruptionEval
      init_args: {num_examples: 10, corruptions: [contrast], severities: [1, 2],
                  cache_dir: corruption_cache}
    - class_path: callbacks.LayerSharpness
      init_args: {num_batches: 1, batch_size: 8}
    - class_path: callbacks.RobustValidation
      init_args:
        num_examples: 20
        train_examples: 20
        attack: {class_path: robust_vit.attacks.PGD, init_args: {eps: 0.0156863, steps: 2}}
"""
# The plots' logged keys and the files they leave in the run's log dir.
PLOTS = {
    "test/adversarial/plot": "adversarial_test.png",
    "test/corruptions/plot": "corruptions_test.png",
    "sharpness/chart": "sharpness/sharpness_001.png",
    "anf/rounds": "anf_rounds.png",
    "fit/robust_validation/plot": "robust_validation.png",
}
PNG = b"\x89PNG\r\n\x1a\n"


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts (and closes them)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def wait_for(self, count: int, timeout: float = 5.0) -> int:
        """The connection count once it reaches ``count`` (or after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self.connections < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.connections


@contextmanager
def listening() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.stop.set()
        listener.thread.join()
        listener.server.close()


@dataclass
class OfflineRun:
    log_dir: Path
    wandb_dir: Path
    record: dict[str, Any]
    log: list[Any]
    connections_during_run: int
    connections_after_probe: int


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> OfflineRun:
    """One ANF fit + test with every plotting callback, wandb offline, all URLs at a listener."""
    root = tmp_path_factory.mktemp("wandb_offline")
    overlay = root / "plots.yaml"
    overlay.write_text(OVERLAY)
    with listening() as listener:
        # A process of its own, as a run is: wandb keeps its first session's settings for the
        # life of a process, and WANDB_SERVICE (left by earlier tests' wandb) would attach the
        # run to their wandb service instead of starting its own.
        url = f"http://127.0.0.1:{listener.port}"
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NO_PROXY", "no_proxy", "WANDB_API_KEY", "WANDB_SERVICE")
        }
        env.update(
            {
                name: url
                for name in (
                    "WANDB_BASE_URL",
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "http_proxy",
                    "https_proxy",
                )
            }
        )
        env.update(
            WANDB_MODE="offline",
            WANDB_DIR=str(root),
            HF_HUB_OFFLINE="1",
            TORCH_HOME=str(root / "torch"),
            PYTHONPATH=str(REPO),
        )
        args = [
            "fit",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "method" / "anf.yaml"),
            "--config",
            str(overlay),
            *tiny_overrides(fmnist_dir),
            f"--{METHOD}.rounds=2",
            f"--{METHOD}.steps_per_round=2",
            f"--{METHOD}.max_synthesis_steps=2",
            "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.limit_test_batches=2",
            "--test_after_fit=true",
            "--group=sweep1",
            "--job_type=anf",
            "--seed_everything=3",
            "--name=offline",
            "--threads=1",
        ]
        done = subprocess.run(
            [sys.executable, "-m", "robust_vit", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        during = listener.wait_for(1, timeout=0.5)
        socket.create_connection(("127.0.0.1", listener.port)).close()  # the listener works
        after = listener.wait_for(during + 1)
    (record_file,) = (root / "runs" / "offline").rglob("results.json")
    (wandb_dir,) = (root / "runs" / "wandb").glob("offline-run-*")
    (log_file,) = wandb_dir.glob("run-*.wandb")
    return OfflineRun(
        record_file.parent,
        wandb_dir,
        json.loads(record_file.read_text()),
        read_records(log_file),
        during,
        after,
    )


def test_nothing_is_sent_while_offline(offline_run: OfflineRun) -> None:
    assert offline_run.connections_during_run == 0
    assert offline_run.connections_after_probe == 1


def test_every_plot_is_a_file_of_the_run_and_a_wandb_media_file(offline_run: OfflineRun) -> None:
    media = offline_run.wandb_dir / "files" / "media" / "images"
    for key, name in PLOTS.items():
        drawn = offline_run.log_dir / name
        assert drawn.read_bytes().startswith(PNG), name
        (logged, *_) = sorted(media.glob(f"{key}_*.png"))
        assert logged.read_bytes().startswith(PNG), key
    summary = final_summary(offline_run.log)
    selected = offline_run.record["sharpness"]["epoch_1"]["ranked"][0]
    assert summary["sharpness/chart"]["captions"] == [f"epoch 1, selected: {selected}"]


def test_summary_holds_the_final_metrics(offline_run: OfflineRun) -> None:
    summary = final_summary(offline_run.log)
    test_metrics = offline_run.record["test"]["metrics"]
    for key in ("test/acc", "test/loss", "test/corruptions/mean_acc"):
        assert summary[key] == pytest.approx(test_metrics[key], rel=1e-6)
    curve = offline_run.record["robust_validation"]["curve"]
    assert summary["val/robust_acc"] == pytest.approx(curve[-1]["val"]["robust"]["acc"])
    assert [exit.exit_code for exit in of_type(offline_run.log, "exit")] == [0]


def test_run_carries_the_sweep_group_the_arm_and_the_seed(offline_run: OfflineRun) -> None:
    (run,) = of_type(offline_run.log, "run")
    assert (run.run_group, run.job_type, list(run.tags)) == ("sweep1", "anf", ["seed3"])
    assert offline_run.record["run"]["seed"] == 3
