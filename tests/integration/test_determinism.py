"""The same config and seed, run twice on CPU, give identical result records and weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, records_under, run, tiny_overrides

FAST = {
    "erm": [],
    "anf": [
        "--model.method.init_args.max_synthesis_steps=3",
        "--model.method.init_args.steps_per_round=2",
        "--model.method.init_args.rounds=2",
    ],
    "pgd_at": ["--model.method.init_args.steps=2"],
    "safer": [
        "--model.method.init_args.steps=2",
        "--model.method.init_args.score_batches=1",
        "--model.method.init_args.k=2",
    ],
}


def method_configs(method: str) -> list[str]:
    """The method's YAML, after method/safer.yaml for SAFER's variants and ablations."""
    layers = ["safer.yaml"] if method.startswith("safer_") else []
    return [
        arg
        for layer in [*layers, f"{method}.yaml"]
        for arg in ("--config", str(EXPERIMENTS / "method" / layer))
    ]


def fit_record(
    method: str,
    seed: int,
    name: str,
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict:
    run(
        [
            "fit",
            *CPU_BASE,
            *method_configs(method),
            *tiny_overrides(fmnist_dir),
            *FAST[method],
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=4",
            "--trainer.limit_val_batches=2",
            "--trainer.limit_test_batches=2",
            "--test_after_fit=true",
            f"--seed_everything={seed}",
            f"--name={name}",
        ],
        tmp_path,
        monkeypatch,
    )
    (record,) = records_under(tmp_path / "runs" / name)
    return record


def outcome(record: dict) -> dict:
    """What must repeat: every metric and the weights digest of fit and test, and their steps."""
    steps = {"fit": record["fit"]["global_step"], "test": record["test"]["weights"]["global_step"]}
    return {
        stage: {
            "metrics": record[stage]["metrics"],
            "steps": steps[stage],
            "weights_sha256": record[stage]["weights_sha256"],
        }
        for stage in steps
    }


@pytest.mark.parametrize("method", list(FAST))
def test_same_seed_same_record_other_seed_other_weights(
    method: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fit_record(method, 7, "first", tmp_path, fmnist_dir, monkeypatch)
    second = fit_record(method, 7, "second", tmp_path, fmnist_dir, monkeypatch)
    assert outcome(first) == outcome(second)
    assert first["run"]["seed"] == 7 and "validate" not in first
    other = fit_record(method, 8, "other", tmp_path, fmnist_dir, monkeypatch)
    assert other["fit"]["weights_sha256"] != first["fit"]["weights_sha256"]
