"""Per-example outcome files through the real CLI: they sum to the record, whatever the batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from application.cli import main
from robust_vit.outcomes import Outcomes
from tests.integration.test_eval_cli import base_args
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
        num_examples: 37
        batch_size: {batch_size}
        epsilons: [2/255, 8/255]
        attacks:
          - class_path: robust_vit.attacks.FGSM
            init_args: {{eps: 0.0}}
          - class_path: robust_vit.attacks.PGD
            init_args: {{eps: 0.0, steps: 3}}
    - class_path: callbacks.CorruptionEval
      init_args:
        num_examples: 11
        batch_size: {batch_size}
        corruptions: [contrast, gaussian_noise]
        severities: [1, 5]
        cache_dir: {cache}
"""


def train(data_dir: Path) -> Path:
    """A few epochs of the tiny model, so that attacks have correct predictions to flip."""
    main(
        [
            "fit",
            *base_args(data_dir, "train"),
            "--trainer.max_epochs=10",
            "--model.optimizer.init_args.lr=0.003",
            "--trainer.limit_val_batches=1",
        ]
    )
    (ckpt, *_) = sorted(Path("runs", "train").rglob("*.ckpt"))
    return ckpt.resolve()


def evaluate(
    tmp_path: Path, data_dir: Path, ckpt: Path, batch_size: int
) -> tuple[Path, dict[str, Any]]:
    """Test the checkpoint with the suite; its record's folder and record."""
    name = f"batch{batch_size}"
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(SUITE.format(batch_size=batch_size, cache=tmp_path / "cache"))
    main(["test", *base_args(data_dir, name), "--config", str(suite), f"--ckpt_path={ckpt}"])
    (path,) = (tmp_path / "runs" / name).rglob("results.json")
    return path.parent, json.loads(path.read_text())


def outcome_files(folder: Path, record: dict[str, Any]) -> dict[str, Outcomes]:
    """Each evaluation section's per-example file, checked against the record's sha256."""
    return {
        section: read_per_example(folder, record[section]["test"]["per_example"])
        for section in ("adversarial", "corruptions")
    }


def test_outcome_files_give_the_recorded_metrics_whatever_the_batch_size(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ckpt = train(fmnist_dir)
    runs = [evaluate(tmp_path, fmnist_dir, ckpt, batch_size) for batch_size in (5, 16)]
    files = [outcome_files(folder, record) for folder, record in runs]
    for (folder, record), outcomes in zip(runs, files, strict=True):
        adversarial, corruptions = record["adversarial"]["test"], record["corruptions"]["test"]
        assert sorted(p.name for p in folder.glob("*.outcomes.safetensors")) == [
            "adversarial_test.outcomes.safetensors",
            "corruptions_test.outcomes.safetensors",
        ]
        assert outcomes["adversarial"].index.tolist() == list(range(37))
        assert outcomes["corruptions"].index.tolist() == list(range(11))
        assert_summaries_match(outcomes["adversarial"], adversarial_summaries(adversarial))
        assert_summaries_match(outcomes["corruptions"], corruption_summaries(corruptions))
        clean, worst = (outcomes["adversarial"].correct[c] for c in ("clean", "worst_case@8/255"))
        assert not bool((worst & ~clean).any()), "robust in the worst case but wrong when clean"
        assert int(worst.sum()) < int(clean.sum()), "the attacks must flip some predictions"
    small, large = files
    for section in ("adversarial", "corruptions"):
        assert torch.equal(small[section].index, large[section].index)
        assert small[section].correct.keys() == large[section].correct.keys()
        for column, bits in small[section].correct.items():
            assert torch.equal(bits, large[section].correct[column]), (section, column)
