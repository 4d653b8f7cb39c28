"""Linear probing trains the head alone: every other tensor stays bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_modules.methods import LinearProbe
from robust_vit.errors import ConfigError
from tests.unit.test_safer import fit, tiny_module


def test_only_the_head_moves_and_the_backbone_gets_no_gradient(tmp_path: Path) -> None:
    module = tiny_module(LinearProbe())
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    fit(module, tmp_path)
    moved = {n for n, p in module.model.named_parameters() if not p.equal(before[n])}
    assert moved == {"vit.head.weight", "vit.head.bias"}
    assert all(p.grad is None for n, p in module.model.named_parameters() if n not in moved)


def test_a_headless_model_is_refused_naming_num_classes() -> None:
    module = tiny_module(LinearProbe())
    module.model.vit.reset_classifier(0)
    with pytest.raises(ConfigError, match="num_classes"):
        module.method.on_fit_start(module)
