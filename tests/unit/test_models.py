from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT, create_vit, default_normalization, save_vit_weights

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def tiny_vit(**overrides: object) -> torch.nn.Module:
    kwargs = dict(num_classes=10, img_size=32, in_chans=1, patch_size=8, model_kwargs=TINY)
    kwargs.update(overrides)
    return create_vit("vit_tiny_patch16_224", **kwargs)  # type: ignore[arg-type]


def test_unknown_model_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"model\.model_name.*vit_nonexistent"):
        create_vit("vit_nonexistent", num_classes=10, img_size=32, in_chans=1)


def test_normalization_is_inside_the_model() -> None:
    vit = tiny_vit().eval()
    wrapped = NormalizedViT(vit, mean=(0.25,), std=(0.5,)).eval()
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(wrapped(x), vit((x - 0.25) / 0.5))


def test_default_normalization_averages_to_one_channel() -> None:
    mean, std = default_normalization(tiny_vit(), in_chans=1)
    assert len(mean) == len(std) == 1 and 0 < std[0]


def test_weights_file_round_trips_through_timm_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = tiny_vit().eval()
    path = save_vit_weights(source, tmp_path / "w.safetensors", {"model_name": "vit_tiny"})
    loaded = tiny_vit(weights=str(path)).eval()
    x = torch.rand(4, 1, 32, 32)
    assert torch.equal(source(x), loaded(x))


def test_weights_for_another_head_size_keep_the_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = tiny_vit()
    path = save_vit_weights(source, tmp_path / "w.safetensors", {})
    loaded = tiny_vit(weights=str(path), num_classes=3)
    assert loaded.head.out_features == 3
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_weights_of_another_architecture_fail_clearly(tmp_path: Path) -> None:
    path = save_vit_weights(tiny_vit(), tmp_path / "w.safetensors", {})
    with pytest.raises(ConfigError, match=r"model\.weights.*does not fit"):
        tiny_vit(weights=str(path), model_kwargs={"embed_dim": 32, "depth": 1, "num_heads": 2})


def test_missing_weights_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.weights.*does not exist"):
        tiny_vit(weights=str(tmp_path / "missing.safetensors"))


def test_garbage_weights_file_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match=r"model\.weights.*not a readable safetensors"):
        tiny_vit(weights=str(bad))
