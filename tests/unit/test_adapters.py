"""SAFER with LoRA/DoRA adapters: what is trained, what moves, and the merged export."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from callbacks.export import ExportWeights
from lightning_modules import SAFER, ViTClassifier
from robust_vit.adapters import adapter_layers, adapter_parameter_names, merged_copy
from robust_vit.errors import ConfigError
from robust_vit.layers import find_vit
from tests.unit.test_safer import FAST, TINY, fit, loader, tiny_module

RANK = 2


def plain_name(name: str) -> str:
    """A parameter's name in the plain model (peft keeps the original under ``base_layer``)."""
    return name.replace(".base_layer.", ".")


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_adapters_of_rank_r_train_and_every_other_parameter_stays_bitwise(
    kind: str, tmp_path: Path
) -> None:
    module = tiny_module(SAFER(k=1, reselect=False, adapter=kind, adapter_rank=RANK, **FAST))
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = fit(module, tmp_path)
    ((layer_name, layer),) = adapter_layers(module.model).items()
    prefix, _ = find_vit(module.model)
    assert [layer_name] == [f"{prefix}{name}" for name in module.method.selected]
    assert layer.lora_A["default"].weight.shape[0] == RANK
    adapters = adapter_parameter_names(module.model)
    trained = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    for name, param in module.model.named_parameters():
        if name in adapters:
            assert id(param) in trained, name
        else:
            assert id(param) not in trained, name
            assert torch.equal(param, before[plain_name(name)]), f"{name} moved"
    assert not torch.equal(
        layer.lora_B["default"].weight, torch.zeros_like(layer.lora_B["default"].weight)
    )


def test_reselection_merges_the_adapters_and_moves_them_to_the_new_layers(tmp_path: Path) -> None:
    module = tiny_module(
        SAFER(
            k=1,
            selection="random",
            reselect_every_n_epochs=1,
            adapter="lora",
            adapter_rank=RANK,
            **FAST,
        )
    )
    initial = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    fit(module, tmp_path, epochs=2)
    first, second = (entry["selected"] for entry in module.method.selections)
    assert first != second
    prefix, _ = find_vit(module.model)
    assert set(adapter_layers(module.model)) == {f"{prefix}{name}" for name in second}
    merged = dict(module.model.named_parameters())
    (moved,) = first
    assert not torch.equal(merged[f"{prefix}{moved}.weight"], initial[f"{prefix}{moved}.weight"])


def test_the_merged_export_loads_as_plain_weights_with_the_adapted_logits(tmp_path: Path) -> None:
    path = tmp_path / "safer_lora.safetensors"
    module = tiny_module(SAFER(k=2, reselect=False, adapter="dora", adapter_rank=RANK, **FAST))
    fit(module, tmp_path, callbacks=[ExportWeights(path=str(path))])
    x, _ = next(iter(loader()))
    module.eval()
    with torch.no_grad():
        adapted = module(x)
    torch.manual_seed(1)  # a different random start: everything must come from the file
    plain = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=TINY,
        weights=str(path),
    ).eval()
    assert not adapter_layers(plain.model)
    with torch.no_grad():
        assert torch.allclose(plain(x), adapted, atol=1e-5, rtol=0)
    names = [n for n, _ in merged_copy(module.model).named_parameters()]
    assert names == [n for n, _ in plain.model.named_parameters()]


def test_adapters_without_peft_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    with pytest.raises(ConfigError, match=r"robust-vit\[peft\]") as error:
        SAFER(adapter="lora")
    assert error.value.field == "model.method.init_args.adapter"
