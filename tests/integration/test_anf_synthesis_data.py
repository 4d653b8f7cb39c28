"""ANF's synthesis draws from a loader of its own: training batches stay what they would be."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from datamodules import FashionMNISTDataModule
from lightning_modules import ViTClassifier
from lightning_modules.methods import ANF, ERM, FinetuneMethod
from robust_vit.samplers import RoundSampler, SeededItems

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2}
BATCH = 16


class TrainingBatches(L.Callback):
    """Every training batch's images, in order."""

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []

    def on_train_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: tuple[torch.Tensor, torch.Tensor],
        batch_idx: int,
    ) -> None:
        self.images.append(batch[0].clone())


def datamodule(fmnist_dir: Path, num_workers: int) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(
        data_dir=str(fmnist_dir),
        augment=False,
        batch_size=BATCH,
        num_workers=num_workers,
        img_size=16,
        in_chans=1,
    )


def train_one_epoch(
    method: FinetuneMethod,
    fmnist_dir: Path,
    num_workers: int,
) -> tuple[list[torch.Tensor], FashionMNISTDataModule]:
    L.seed_everything(3)
    data = datamodule(fmnist_dir, num_workers)
    model = ViTClassifier(
        num_classes=10, img_size=16, in_chans=1, patch_size=8, model_kwargs=TINY, method=method
    )
    batches = TrainingBatches()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[batches],
    )
    trainer.fit(model, data)
    return batches.images, data


def test_synthesis_leaves_the_training_epoch_alone_with_persistent_workers(
    fmnist_dir: Path,
) -> None:
    anf = ANF(rounds=4, steps_per_round=6, max_synthesis_steps=3, eps=1e-9)
    with_synthesis, data = train_one_epoch(anf, fmnist_dir, num_workers=2)
    without, _ = train_one_epoch(ERM(), fmnist_dir, num_workers=2)
    assert int(anf.current_round) == 3  # four syntheses ran inside the epoch
    train_set = data.train_set
    assert len(with_synthesis) == len(train_set) // BATCH
    assert all(torch.equal(a, b) for a, b in zip(with_synthesis, without, strict=True))
    index_of = {train_set[i][0].numpy().tobytes(): i for i in range(len(train_set))}
    seen = [index_of[image.numpy().tobytes()] for batch in with_synthesis for image in batch]
    assert len(seen) == len(set(seen)) == len(with_synthesis) * BATCH


def synthesis_batches(
    anf: ANF,
    data: FashionMNISTDataModule,
    round_index: int,
    rank: int = 0,
    world_size: int = 1,
    count: int = 3,
) -> list[torch.Tensor]:
    loader = torch.utils.data.DataLoader(SeededItems(data.train_set, seed=0), batch_size=BATCH)
    trainer = SimpleNamespace(train_dataloader=loader, world_size=world_size, global_rank=rank)
    module = SimpleNamespace(trainer=trainer, device=torch.device("cpu"))
    images = anf._images(module, round_index)  # type: ignore[arg-type]
    return [next(images) for _ in range(count)]


def test_each_round_draws_its_own_batches_the_same_on_a_repeat(fmnist_dir: Path) -> None:
    data = datamodule(fmnist_dir, num_workers=0)
    data.setup("fit")
    anf = ANF(seed=1)
    first, again = synthesis_batches(anf, data, 0), synthesis_batches(anf, data, 0)
    second = synthesis_batches(anf, data, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = synthesis_batches(ANF(seed=2), data, 0)
    assert not torch.equal(first[0], other_seed[0])


def test_without_a_seed_the_synthesis_follows_the_runs_seed(fmnist_dir: Path) -> None:
    data = datamodule(fmnist_dir, num_workers=0)
    data.setup("fit")
    anf = ANF()  # seed None: the run's seed_everything
    L.seed_everything(1)
    run1 = synthesis_batches(anf, data, 0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(run1, synthesis_batches(ANF(seed=1), data, 0), strict=True)
    )
    L.seed_everything(2)
    assert not torch.equal(run1[0], synthesis_batches(anf, data, 0)[0])


@pytest.mark.parametrize("round_index", [0, 5])
def test_round_order_shares_one_permutation_between_ranks(round_index: int) -> None:
    dataset = list(range(10))

    def keys(rank: int, count: int) -> list[int]:
        stream = iter(RoundSampler(dataset, 7, round_index, num_replicas=2, rank=rank))
        return [next(stream) for _ in range(count)]

    rank0, rank1 = keys(0, 10), keys(1, 10)
    assert sorted(rank0[:5] + rank1[:5]) == dataset  # one pass: the ranks split a permutation
    assert sorted(rank0[5:] + rank1[5:]) == dataset  # the next pass: another permutation
    assert rank0[:5] != rank0[5:]
    assert keys(0, 10) == rank0
