from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import CIFARDataModule, FashionMNISTDataModule, ImageFolderDataModule
from robust_vit.errors import ConfigError
from tests.fakes import write_cifar, write_fashion_mnist, write_idx, write_image_folder


def test_fashion_mnist_shapes_range_and_split(fmnist_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(fmnist_dir), batch_size=16, val_fraction=0.25)
    dm.setup("fit")
    dm.setup("test")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    assert y.dtype == torch.long and int(y.max()) < 10
    assert len(dm.train_set) + len(dm.val_set) == 400
    assert len(dm.val_set) == 100 and len(dm.test_set) == 200


def test_split_is_fixed_by_split_seed(fmnist_dir: Path) -> None:
    def val_indices(seed: int) -> list[int]:
        dm = FashionMNISTDataModule(data_dir=str(fmnist_dir), split_seed=seed)
        dm.setup("fit")
        return list(dm.val_set.indices)

    assert val_indices(0) == val_indices(0)
    assert val_indices(0) != val_indices(1)


def test_train_and_val_do_not_overlap(fmnist_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(fmnist_dir))
    dm.setup("fit")
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)


def test_channels_and_size_follow_the_options(fmnist_dir: Path) -> None:
    dm = FashionMNISTDataModule(data_dir=str(fmnist_dir), img_size=48, in_chans=3, batch_size=4)
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 48, 48)
    assert torch.equal(x[:, 0], x[:, 1])


def test_upscale_resizes_the_image_where_padding_leaves_a_border(fmnist_dir: Path) -> None:
    def first_image(upscale: bool) -> torch.Tensor:
        dm = FashionMNISTDataModule(data_dir=str(fmnist_dir), img_size=56, upscale=upscale)
        dm.setup("test")
        return dm.test_set[0][0][0]

    padded, upscaled = first_image(False), first_image(True)
    assert padded.shape == upscaled.shape == (56, 56)
    assert torch.equal(padded[:14], torch.zeros(14, 56))  # a 14 px border above the 28 px image
    expected = torch.nn.functional.interpolate(
        padded[14:42, 14:42][None, None] * 255, size=(56, 56), mode="bilinear", antialias=True
    )
    assert torch.allclose(upscaled * 255, expected[0, 0].round().clamp(0, 255))


def test_missing_data_dir_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.data_dir.*not a directory"):
        FashionMNISTDataModule(data_dir=str(tmp_path / "nope"))


def test_labels_out_of_range_are_rejected(tmp_path: Path) -> None:
    root = write_fashion_mnist(tmp_path / "fm")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(200, 12, np.uint8))
    dm = FashionMNISTDataModule(data_dir=str(root))
    with pytest.raises(ConfigError, match="labels span"):
        dm.setup("test")


def test_cifar10_torchvision_layout(tmp_path: Path) -> None:
    dm = CIFARDataModule(data_dir=str(write_cifar(tmp_path)), batch_size=8, val_fraction=0.2)
    dm.setup("fit")
    x, _y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and dm.num_classes == 10
    assert len(dm.train_set) + len(dm.val_set) == 40


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    dm = CIFARDataModule(data_dir=str(write_cifar(tmp_path, num_classes=100)), num_classes=100)
    dm.setup("test")
    assert dm.num_classes == 100 and len(dm.test_set) == 20


def test_cifar_without_files_or_download_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.download"):
        CIFARDataModule(data_dir=str(tmp_path))


def test_image_folder_layout(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, classes=3, per_class=4)
    dm = ImageFolderDataModule(
        data_dir=str(root),
        num_classes=3,
        img_size=32,
        batch_size=4,
        num_workers=0,
        val_fraction=0.25,
    )
    dm.setup("fit")
    dm.setup("test")
    x, _y = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 32, 32) and 0 <= x.min() and x.max() <= 1


def test_image_folder_class_count_must_match(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, classes=3, per_class=1)
    with pytest.raises(ConfigError, match=r"data\.num_classes.*3 class folders"):
        ImageFolderDataModule(data_dir=str(root), num_classes=1000)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, classes=2, per_class=2)
    bad = root / "val" / "class_0" / "img_0.png"
    bad.write_bytes(b"garbage")
    dm = ImageFolderDataModule(
        data_dir=str(root), num_classes=2, img_size=32, num_workers=0, verify_images=False
    )
    dm.setup("test")
    with pytest.raises(ConfigError, match=r"img_0\.png"):
        dm.test_set[0]


def test_corrupt_image_fails_at_setup_before_any_batch(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, classes=2, per_class=2)
    (root / "train" / "class_1" / "img_1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    dm = ImageFolderDataModule(data_dir=str(root), num_classes=2, img_size=32, num_workers=0)
    dm.setup("test")  # the test split is intact
    with pytest.raises(ConfigError, match=r"img_1\.png"):
        dm.setup("fit")
    assert dm.train_set is None


def test_resumable_sampler_skips_exactly_the_trained_keys_and_partitions_ranks() -> None:
    from robust_vit.samplers import ResumableSampler

    data = list(range(40))
    whole = list(ResumableSampler(data, 1, 0, seed=3))
    sampler = ResumableSampler(data, 1, 0, seed=3, resume_offset=lambda: 12)
    assert list(sampler) == whole[12:]
    assert list(sampler) == whole  # only the first pass skips
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != [i for i, _ in whole] and {e for _, e in sampler} == {1}
    shares = [[i for i, _ in ResumableSampler(data, 2, r, seed=3)] for r in (0, 1)]
    assert sorted(shares[0] + shares[1]) == data


def test_seeded_items_repeat_their_augmentation_per_epoch_and_leave_the_global_rng() -> None:
    from robust_vit.samplers import SeededItems

    class Noisy:
        def __getitem__(self, index: int) -> torch.Tensor:
            return torch.rand(3) + index

    items = SeededItems(Noisy(), seed=1)
    state = torch.get_rng_state()
    assert torch.equal(items[(4, 0)], items[(4, 0)])
    assert not torch.equal(items[(4, 0)], items[(4, 1)])
    assert torch.equal(torch.get_rng_state(), state)
