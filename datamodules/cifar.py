"""CIFAR-10 and CIFAR-100 in torchvision's on-disk format (``cifar-10-batches-py``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from datamodules.base import ImageClassificationDataModule
from datamodules.tensor_images import TensorImageDataset
from robust_vit.errors import ConfigError
from robust_vit.ranges import check_ranges


def read_cifar(folder: Path, num_classes: int, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 3, 32, 32)`` and int64 labels from the python-pickle batches."""
    if num_classes == 10:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    else:
        names = ["train" if train else "test"]
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise ConfigError(
                "data.data_dir", f"{str(path)!r} is missing; unpack the full archive."
            )
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels" if num_classes == 10 else "fine_labels"]))
    y = np.concatenate(labels).astype(np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        raise ConfigError(
            "data.data_dir",
            f"labels in {folder} span {y.min()}..{y.max()}, outside 0..{num_classes - 1}.",
        )
    return np.concatenate(images), y


class CIFARDataModule(ImageClassificationDataModule):
    """CIFAR-10 (``num_classes: 10``) or CIFAR-100 (``num_classes: 100``), held in memory.

    Args:
        data_dir: folder that holds (or will hold) ``cifar-10-batches-py`` / ``cifar-100-python``.
        num_classes: 10 or 100, which picks the dataset.
        download: fetch the archive when missing (needs network access; off by default).
        augment: random shifts and horizontal flips on the training split.
        upscale: resize the 32 px images to a larger ``img_size`` (bilinear) instead of
            centre-padding them (a pretrained ViT at 224 px).
        **kwargs: batch size, split and shape options of the base datamodule.
    """

    @check_ranges("data")
    def __init__(
        self,
        data_dir: str = "data/cifar",
        num_classes: Literal[10, 100] = 10,
        download: bool = False,
        augment: bool = True,
        upscale: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.upscale = upscale
        self.num_classes = num_classes
        self.data_dir = Path(data_dir).expanduser()
        self.download = download
        self.augment = augment
        self.folder = "cifar-10-batches-py" if num_classes == 10 else "cifar-100-python"
        if not download and not (self.data_dir / self.folder).is_dir():
            raise ConfigError(
                "data.data_dir",
                f"{str(self.data_dir / self.folder)!r} does not exist. Unpack the CIFAR python "
                "archive there, or set data.download: true on a machine with network access.",
            )

    def geometry(self) -> dict[str, Any]:
        """The base's, and whether images were upscaled rather than centre-padded."""
        return {**super().geometry(), "upscale": self.upscale}

    def prepare_data(self) -> None:
        """Download the archive once (rank zero) when asked to."""
        if self.download:
            cls = CIFAR10 if self.num_classes == 10 else CIFAR100
            cls(str(self.data_dir), train=True, download=True)

    def _dataset(self, train: bool, augment: bool) -> Dataset:
        images, labels = read_cifar(self.data_dir / self.folder, self.num_classes, train)
        return TensorImageDataset(
            torch.from_numpy(images),
            torch.from_numpy(labels),
            self.img_size,
            self.in_chans,
            augment=augment,
            upscale=self.upscale,
        )

    def build_train_set(self, augment: bool) -> Dataset:
        """The 50 000 training images."""
        return self._dataset(train=True, augment=augment and self.augment)

    def build_test_set(self) -> Dataset:
        """The 10 000 test images."""
        return self._dataset(train=False, augment=False)
