from __future__ import annotations

import torch

from lightning_modules import ERM, ViTClassifier
from lightning_modules.classifier import weight_decay_groups

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def tiny_module(**kwargs: object) -> ViTClassifier:
    return ViTClassifier(model_name="vit_tiny_patch16_224", num_classes=10, img_size=32,
                         in_chans=1, patch_size=8, model_kwargs=TINY, **kwargs)  # type: ignore[arg-type]


def test_default_method_is_erm_and_inputs_are_pixels() -> None:
    module = tiny_module()
    assert isinstance(module.method, ERM)
    assert module(torch.rand(2, 1, 32, 32)).shape == (2, 10)


def test_no_weight_decay_on_biases_norms_and_tokens() -> None:
    module = tiny_module()
    decay, no_decay = weight_decay_groups(module.model)
    names = {id(p): n for n, p in module.model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert "vit.cls_token" in skipped and "vit.pos_embed" in skipped
    assert any(n.endswith("norm1.weight") for n in skipped)
    assert no_decay["weight_decay"] == 0.0


def test_erm_step_reduces_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    module = tiny_module()
    x, y = torch.rand(16, 1, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    first = module.method.training_step(module, (x, y), 0)["loss"].item()
    for _ in range(20):
        loss = module.method.training_step(module, (x, y), 0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
