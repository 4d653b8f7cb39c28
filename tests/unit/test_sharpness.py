from __future__ import annotations

from functools import partial

import pytest
import timm
import torch
from torch import nn

from robust_vit.attacks import pgd
from robust_vit.errors import ConfigError
from robust_vit.layers import candidate_layers, layer_parameters
from robust_vit.models import NormalizedViT
from robust_vit.sharpness import fixed_batches, layer_sharpness, num_selected, select_layers

DEPTH = 2


def tiny_vit(seed: int = 0) -> NormalizedViT:
    torch.manual_seed(seed)
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        embed_dim=16,
        depth=DEPTH,
        num_heads=2,
    )
    return NormalizedViT(vit, (0.5,), (0.5,))


def batches(n: int = 2, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(8, 1, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
        for _ in range(n)
    ]


def make_qkv_sharp(model: NormalizedViT, block: int, factor: float) -> None:
    """Shrink the value rows of qkv and grow proj: the same function, a much sharper qkv."""
    attn = model.vit.blocks[block].attn
    dim = attn.proj.in_features
    with torch.no_grad():
        attn.qkv.weight[2 * dim :] /= factor
        attn.qkv.bias[2 * dim :] /= factor
        attn.proj.weight *= factor


def test_linear_candidates_are_the_block_linears_patch_projection_and_head() -> None:
    layers = candidate_layers(tiny_vit())
    names = [layer.name for layer in layers]
    assert names[0] == "patch_embed.proj" and names[-1] == "head"
    assert len(names) == 2 + 4 * DEPTH
    assert {
        "blocks.1.attn.qkv",
        "blocks.1.attn.proj",
        "blocks.1.mlp.fc1",
        "blocks.1.mlp.fc2",
    } <= set(names)
    params = {n for layer in layers for n in layer.param_names}
    assert not any("norm" in n or "pos_embed" in n or "cls_token" in n for n in params)
    assert all(n.startswith("vit.") for n in params)


def test_block_granularity_groups_each_blocks_linears() -> None:
    model = tiny_vit()
    layers = candidate_layers(model, "block")
    assert [layer.name for layer in layers] == ["patch_embed.proj", "blocks.0", "blocks.1", "head"]
    block = layer_parameters(model, [layers[1]])
    assert len(block) == 8 and not any("norm" in n for n in block)


def test_a_model_without_a_vit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="patch_embed"):
        candidate_layers(nn.Linear(2, 2))


@pytest.mark.parametrize("variant", ["one_step", "first_order", "multi_step"])
def test_the_layer_made_sharp_on_purpose_ranks_first(variant: str) -> None:
    model = tiny_vit()
    x, _ = batches(1)[0]
    before = model(x)
    make_qkv_sharp(model, block=1, factor=100.0)
    torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    scores = layer_sharpness(model, candidate_layers(model), batches(), rho=0.05, variant=variant)
    assert max(scores, key=scores.get) == "blocks.1.attn.qkv"
    assert select_layers(scores, 1) == ["blocks.1.attn.qkv"]


def test_scoring_restores_weights_mode_and_grads() -> None:
    model = tiny_vit()
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    attack = partial(pgd, eps=2 / 255, alpha=1 / 255, steps=2)
    scores = layer_sharpness(
        model, candidate_layers(model), batches(), attack=attack, radius="relative"
    )
    assert all(torch.isfinite(torch.tensor(v)) for v in scores.values())
    assert model.training
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None


def test_frozen_parameters_can_be_scored_and_stay_frozen() -> None:
    model = tiny_vit()
    model.requires_grad_(False)
    scores = layer_sharpness(model, candidate_layers(model), batches(1), variant="first_order")
    assert len(scores) == 2 + 4 * DEPTH
    assert not any(p.requires_grad for p in model.parameters())


def test_selection_modes() -> None:
    scores = {"a": 0.3, "b": 0.1, "c": 0.2, "d": -0.1}
    assert select_layers(scores, 2) == ["a", "c"]
    assert select_layers(scores, 2, "flattest") == ["d", "b"]
    assert select_layers(scores, 2, "all") == ["a", "b", "c", "d"]
    pick = select_layers(scores, 2, "random", torch.Generator().manual_seed(0))
    assert len(set(pick)) == 2 and set(pick) <= set(scores)
    assert pick == select_layers(scores, 2, "random", torch.Generator().manual_seed(0))


def test_number_selected_and_its_errors() -> None:
    assert num_selected(50) == round(0.05 * 50)
    assert num_selected(10) == 1 and num_selected(10, fraction=1.0) == 10
    assert num_selected(10, k=4) == 4
    with pytest.raises(ConfigError, match=r"model\.method\.init_args\.fraction"):
        num_selected(10, fraction=0.0, field="model.method.init_args")
    with pytest.raises(ConfigError, match=r"\.k"):
        num_selected(10, k=11)


def test_fixed_batches_are_the_same_images_for_the_same_seed() -> None:
    data = torch.utils.data.TensorDataset(torch.rand(40, 1, 4, 4), torch.arange(40))
    first, again = fixed_batches(data, 2, 8, seed=3), fixed_batches(data, 2, 8, seed=3)
    assert len(first) == 2 and first[0][0].shape == (8, 1, 4, 4)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][1], fixed_batches(data, 2, 8, seed=4)[0][1])
