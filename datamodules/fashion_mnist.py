"""Fashion-MNIST (Zalando, MIT): 60 000 train / 10 000 test grey 28x28 product photos, 10 classes.

The default real dataset of this project, because Debian ships it (`dataset-fashion-mnist`) and
it needs no network. It is grey product photos, not natural colour images: numbers on it are a
CPU-scale sanity check of a method, not a stand-in for CIFAR or ImageNet.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.base import ImageClassificationDataModule
from datamodules.idx import read_idx
from datamodules.tensor_images import TensorImageDataset
from robust_vit.errors import ConfigError
from robust_vit.ranges import PositiveInt, check_ranges

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_DIR = Path("data/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def default_data_dir() -> Path | None:
    """Where the Debian package put the idx files, else ``make data``'s download folder."""
    if shutil.which("dpkg") is not None:
        listing = subprocess.run(["dpkg", "-L", DEBIAN_PACKAGE], capture_output=True, text=True)
        for line in listing.stdout.splitlines():
            if line.endswith("train-images-idx3-ubyte.gz"):
                return Path(line).parent
    for candidate in (DEBIAN_DIR, DOWNLOAD_DIR):
        if candidate.is_dir():
            return candidate
    return None


def find_idx_file(data_dir: Path, stem: str) -> Path:
    """The idx file ``stem`` in ``data_dir``, gzipped or not."""
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    raise ConfigError(
        "data.data_dir",
        f"{str(data_dir)!r} has no {stem}(.gz). Point data.data_dir at the folder holding the four "
        "Fashion-MNIST idx files.",
    )


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, 28, 28)`` and int labels ``(N,)`` of one split, checked to agree."""
    images_stem, labels_stem = SPLIT_FILES[split]
    images = read_idx(find_idx_file(data_dir, images_stem))
    labels = read_idx(find_idx_file(data_dir, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ConfigError(
            "data.data_dir",
            f"{split} images {images.shape} and labels {labels.shape} do not match in "
            f"{str(data_dir)!r}; re-fetch the dataset.",
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ConfigError(
            "data.data_dir",
            f"{split} labels span {labels.min()}..{labels.max()}, outside 0..{len(CLASSES) - 1}; "
            "re-fetch the dataset.",
        )
    return images, labels


class FashionMNISTDataModule(ImageClassificationDataModule):
    """Fashion-MNIST from its idx files, centre-padded (or upscaled) to ``img_size``.

    Args:
        data_dir: folder with the four idx files; default: the Debian package's folder.
        augment: random shifts and horizontal flips on the training split.
        limit_train: keep only the first N training images (for quick runs; None keeps all).
        in_chans: channels the model receives (1 here by default: the images are grey).
        upscale: resize the 28 px images to ``img_size`` (bilinear) instead of centre-padding
            them, so that a pretrained ViT sees the object across its patches.
        **kwargs: batch size, split and shape options of
            :class:`~datamodules.base.ImageClassificationDataModule`.
    """

    num_classes = len(CLASSES)

    @check_ranges("data")
    def __init__(
        self,
        data_dir: str | None = None,
        augment: bool = True,
        limit_train: PositiveInt | None = None,
        in_chans: Literal[1, 3] = 1,
        upscale: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(in_chans=in_chans, **kwargs)
        self.data_dir = self._resolve_data_dir(data_dir)
        self.augment = augment
        self.limit_train = limit_train
        self.upscale = upscale

    def geometry(self) -> dict[str, Any]:
        """The base's, and whether images were upscaled rather than centre-padded."""
        return {**super().geometry(), "upscale": self.upscale}

    @staticmethod
    def _resolve_data_dir(data_dir: str | None) -> Path:
        if data_dir is not None:
            path = Path(data_dir).expanduser()
            if not path.is_dir():
                raise ConfigError("data.data_dir", f"{str(path)!r} is not a directory.")
            return path
        found = default_data_dir()
        if found is None:
            raise ConfigError(
                "data.data_dir",
                f"no Fashion-MNIST found. Run `make data` (installs the Debian package "
                f"{DEBIAN_PACKAGE}) or set data.data_dir to a folder with the idx files.",
            )
        return found

    def _dataset(self, split: str, augment: bool) -> Dataset:
        images, labels = load_split(self.data_dir, split)
        if split == "train" and self.limit_train is not None:
            images, labels = images[: self.limit_train], labels[: self.limit_train]
        return TensorImageDataset(
            torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
            self.img_size,
            self.in_chans,
            augment=augment,
            upscale=self.upscale,
        )

    def build_train_set(self, augment: bool) -> Dataset:
        """The 60 000 training images."""
        return self._dataset("train", augment and self.augment)

    def build_test_set(self) -> Dataset:
        """The 10 000 test images."""
        return self._dataset("test", augment=False)
