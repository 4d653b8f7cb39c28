"""Shared fixtures: offline, CPU, two threads, small real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.fakes import write_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
TINY_MODEL = '{"embed_dim": 16, "depth": 1, "num_heads": 2}'

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and no writes outside tmp: wandb disabled, hub caches in tmp."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed Fashion-MNIST slice written as real idx files."""
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion_mnist"))
