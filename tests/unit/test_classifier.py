from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import ERM, ViTClassifier
from lightning_modules.classifier import weight_decay_groups

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def tiny_module(**kwargs: object) -> ViTClassifier:
    return ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=TINY,
        **kwargs,
    )  # type: ignore[arg-type]


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


def test_train_accuracy_is_the_epochs_accuracy_and_restarts_every_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = tiny_module(optimizer=partial(torch.optim.SGD, lr=0.0))
    x = torch.rand(24, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = module(x).argmax(-1)
    right, wrong = predicted[:12], (predicted[12:] + 1) % 10
    epochs = [TensorDataset(x[:12], right), TensorDataset(x[12:], wrong)]

    class EpochData(L.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(epochs[self.trainer.current_epoch], batch_size=4)

    seen: list[float] = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, *_: object) -> None:
            if "train/acc" in trainer.callback_metrics:
                seen.append(trainer.callback_metrics["train/acc"].item())

    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[Record()],
    )
    trainer.fit(module, datamodule=EpochData())
    seen.append(trainer.callback_metrics["train/acc"].item())
    assert seen == [1.0, 0.0]
