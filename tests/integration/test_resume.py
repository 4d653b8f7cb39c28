"""Exact resume: a run resumed mid-epoch ends with the weights of the run never interrupted.

Each method's uninterrupted run saves a checkpoint after every step; a second run resumes from
the one in the middle of the first epoch (what a run killed there leaves) and must end with the
same weights digest, bit for bit (CPU, fp32): data order, augmentation, every RNG, the LR
schedule, the optimizer, ANF's noise and round, SAFER's selection and SAM state all carry over.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides
from tests.integration.test_determinism import FAST, method_configs

STEPS_PER_EPOCH = 4
# SAFER with LoRA re-selects at the second epoch: after the resume, the adapters move.
RESUMED = {
    **FAST,
    "safer_lora": [
        *FAST["safer"],
        "--model.method.init_args.reselect_every_n_epochs=1",
        "--model.method.init_args.selection=random",
    ],
}


def every_step(tmp_path: Path) -> list[str]:
    overlay = tmp_path / "every_step.yaml"
    overlay.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"      init_args: {{dirpath: {tmp_path / 'steps'}, every_n_train_steps: 1, "
        "save_top_k: -1, filename: '{step}'}\n"
    )
    return ["--config", str(overlay)]


@pytest.mark.parametrize("method", list(RESUMED))
def test_resume_mid_epoch_ends_with_the_same_weights(
    method: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [
        "fit",
        *CPU_BASE,
        *method_configs(method),
        *tiny_overrides(fmnist_dir),
        *RESUMED[method],
        "--trainer.max_epochs=2",
        f"--trainer.limit_train_batches={STEPS_PER_EPOCH}",
        "--trainer.limit_val_batches=2",
        "--seed_everything=5",
    ]
    run([*common, *every_step(tmp_path), "--name=whole"], tmp_path, monkeypatch)
    (whole,) = records_under(tmp_path / "runs" / "whole")
    assert whole["fit"]["global_step"] == 2 * STEPS_PER_EPOCH

    middle = tmp_path / "steps" / "step=2.ckpt"  # two of the first epoch's four batches trained
    run([*common, f"--ckpt_path={middle}", "--name=resumed"], tmp_path, monkeypatch)
    (resumed,) = records_under(tmp_path / "runs" / "resumed")
    assert resumed["fit"]["global_step"] == whole["fit"]["global_step"]
    assert resumed["fit"]["weights_sha256"] == whole["fit"]["weights_sha256"]
    if method == "safer_lora":  # the run it checks moved its adapters after the resume point
        selections = whole["fit"]["method"]["selections"]
        assert selections[1]["changed"] and selections == resumed["fit"]["method"]["selections"]
        assert whole["fit"]["method"]["adapter"]["kind"] == "lora"
        assert 0 < whole["fit"]["trainable_params"] == whole["fit"]["method"]["trainable_params"]
