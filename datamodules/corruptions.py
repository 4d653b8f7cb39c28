"""Corrupted test sets: CIFAR-10-C / CIFAR-100-C ``.npy`` files and ImageNet-C folder trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from datamodules.image_folder import load_rgb
from datamodules.tensor_images import TensorImageDataset
from robust_vit.corruptions import SEVERITIES
from robust_vit.errors import ConfigError


def load_cifar_c(
    folder: str | Path, corruption: str, severity: int, field: str = "data_dir"
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, H, W, C)`` images and int64 labels of one corruption at one severity.

    ``<corruption>.npy`` holds the 5 severities stacked (``(5 N, H, W, C)``), ``labels.npy``
    the matching ``(5 N,)`` labels: the layout of CIFAR-10-C and of our own cache.
    """
    if severity not in SEVERITIES:
        raise ConfigError("severities", f"must be in {SEVERITIES}, got {severity}.")
    images, labels = open_cifar_c(folder, corruption, field)
    n = len(images) // len(SEVERITIES)
    part = slice((severity - 1) * n, severity * n)
    return np.array(images[part]), np.asarray(labels[part], dtype=np.int64)


def open_cifar_c(
    folder: str | Path, corruption: str, field: str = "data_dir"
) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped images and labels of one corruption, their layout checked (nothing read)."""
    folder = Path(folder)
    path, labels_path = folder / f"{corruption}.npy", folder / "labels.npy"
    for p in (path, labels_path):
        if not p.is_file():
            raise ConfigError(
                field,
                f"{str(p)!r} is missing; point {field} at a folder in the "
                "CIFAR-10-C layout (<corruption>.npy and labels.npy).",
            )
    try:
        images = np.load(path, mmap_mode="r")
        labels = np.load(labels_path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise ConfigError(
            field,
            f"cannot read {str(path)!r} or its labels.npy ({err}); "
            "re-download or re-render the set.",
        ) from err
    if (
        images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[3] not in (1, 3)
        or len(images) % len(SEVERITIES)
        or labels.shape != (len(images),)
    ):
        raise ConfigError(
            field,
            f"{str(path)!r} is {images.dtype} {images.shape} with labels "
            f"{labels.shape}; expected uint8 (5 N, H, W, 1|3) and labels (5 N,).",
        )
    return images, labels


def cifar_c_dataset(
    folder: str | Path, corruption: str, severity: int, img_size: int, in_chans: int
) -> Dataset:
    """One corruption at one severity as float images in [0, 1], shaped for the model."""
    images, labels = load_cifar_c(folder, corruption, severity)
    return TensorImageDataset(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        img_size,
        in_chans,
    )


def imagenet_c_dataset(
    root: str | Path, corruption: str, severity: int, in_chans: int = 3
) -> Dataset:
    """``root/<corruption>/<severity>/<class>/<image>``, fed as stored (no resize: already 224)."""
    folder = Path(root) / corruption / str(severity)
    if not folder.is_dir():
        raise ConfigError(
            "data_dir",
            f"{str(folder)!r} does not exist (expected the ImageNet-C "
            "tree <root>/<corruption>/<severity>/<class>/).",
        )
    grey = [transforms.Grayscale(1)] if in_chans == 1 else []
    return ImageFolder(
        str(folder), transforms.Compose([*grey, transforms.ToTensor()]), loader=load_rgb
    )
