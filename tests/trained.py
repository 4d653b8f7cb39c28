"""A small ViT trained for seconds on the committed Fashion-MNIST slice, and its test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lightning_modules import ViTClassifier
from tests.fakes import SLICE

SMALL = {"embed_dim": 24, "depth": 1, "num_heads": 2}


@dataclass(frozen=True)
class Trained:
    """The trained normalised model and the (padded to 32 px) test images in [0, 1]."""

    model: nn.Module
    x: Tensor
    y: Tensor


def to_inputs(images: np.ndarray) -> Tensor:
    """uint8 ``(N, 28, 28)`` to float ``(N, 1, 32, 32)`` in [0, 1], centre-padded."""
    return torch.nn.functional.pad(
        torch.from_numpy(images).float().div(255).unsqueeze(1), (2, 2, 2, 2)
    )


def train_small_model(epochs: int = 10, seed: int = 0) -> Trained:
    """Adam on the 400 training images: a model that is clearly better than chance."""
    data = np.load(SLICE)
    x, y = to_inputs(data["x_train"]), torch.from_numpy(data["y_train"].astype(np.int64))
    torch.manual_seed(seed)
    module = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=SMALL,
    )
    model = module.model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(50):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return Trained(
        model, to_inputs(data["x_test"]), torch.from_numpy(data["y_test"].astype(np.int64))
    )


@pytest.fixture(scope="session")
def trained() -> Trained:
    """The small trained model, built once per test session."""
    return train_small_model()
