"""Exact resume: a run resumed mid-epoch ends with the weights of the run never interrupted.

Each method's uninterrupted run saves a checkpoint after every step; a second run resumes from
the one in the middle of the first epoch (what a run killed there leaves) and must end with the
same weights digest, bit for bit (CPU, fp32): data order, augmentation, every RNG, the LR
schedule, the optimizer, ANF's noise and round, SAFER's selection and SAM state all carry over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides
from tests.integration.test_determinism import FAST

STEPS_PER_EPOCH = 4


def every_step(tmp_path: Path) -> list[str]:
    overlay = tmp_path / "every_step.yaml"
    overlay.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"      init_args: {{dirpath: {tmp_path / 'steps'}, every_n_train_steps: 1, "
        "save_top_k: -1, filename: '{step}'}\n"
    )
    return ["--config", str(overlay)]


@pytest.mark.parametrize("method", list(FAST))
def test_resume_mid_epoch_ends_with_the_same_weights(method: str, tmp_path: Path,
                                                     fmnist_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    common = ["fit", *CPU_BASE, "--config", str(EXPERIMENTS / "method" / f"{method}.yaml"),
              *tiny_overrides(fmnist_dir), *FAST[method], "--trainer.max_epochs=2",
              f"--trainer.limit_train_batches={STEPS_PER_EPOCH}", "--trainer.limit_val_batches=2",
              "--seed_everything=5"]
    run([*common, *every_step(tmp_path), "--name=whole"], tmp_path, monkeypatch)
    (whole,) = records_under(tmp_path / "runs" / "whole")
    assert whole["fit"]["global_step"] == 2 * STEPS_PER_EPOCH

    middle = tmp_path / "steps" / "step=2.ckpt"  # two of the first epoch's four batches trained
    run([*common, f"--ckpt_path={middle}", "--name=resumed"], tmp_path, monkeypatch)
    (resumed,) = records_under(tmp_path / "runs" / "resumed")
    assert resumed["fit"]["global_step"] == whole["fit"]["global_step"]
    assert resumed["fit"]["weights_sha256"] == whole["fit"]["weights_sha256"]
