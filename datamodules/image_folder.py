"""Image folders in the ImageNet layout: ``root/train/<class>/*`` and ``root/val/<class>/*``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from datamodules.base import ImageClassificationDataModule
from robust_vit.errors import ConfigError
from robust_vit.ranges import (
    AtLeast8,
    LeftOpenUnitInterval,
    NonNegativeInt,
    PositiveInt,
    ZeroToHalf,
    check_ranges,
)


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, naming the file when it is corrupt."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError(
            "data.data_dir", f"cannot decode image {path!r} ({err}); remove or replace it."
        ) from err


def eval_transform(
    img_size: int, crop_fraction: float = 0.875, in_chans: int = 3
) -> transforms.Compose:
    """Resize to ``img_size / crop_fraction``, centre-crop ``img_size``, to a tensor in [0, 1]."""
    grey = [transforms.Grayscale(1)] if in_chans == 1 else []
    return transforms.Compose(
        [
            transforms.Resize(round(img_size / crop_fraction)),
            transforms.CenterCrop(img_size),
            *grey,
            transforms.ToTensor(),
        ]
    )


def verify_image_files(folder: Path) -> None:
    """Fail naming the first file under ``folder``'s class folders that is not a valid image."""
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if path.suffix.lower() not in IMG_EXTENSIONS:
                continue
            try:
                with Image.open(path) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as err:
                raise ConfigError(
                    "data.data_dir",
                    f"cannot decode image {str(path)!r} ({err}); remove or replace it.",
                ) from err


class ImageFolderDataModule(ImageClassificationDataModule):
    """ImageNet-style folders, resized on the fly (train: random resized crop and flip).

    Args:
        data_dir: root with ``train/`` and ``val/`` subfolders of class folders.
        num_classes: number of class folders expected (checked against ``train/``).
        train_split: name of the training subfolder.
        test_split: name of the held-out subfolder used as the test set.
        crop_fraction: evaluation centre-crop fraction (the image is resized to
            ``img_size / crop_fraction`` first).
        verify_images: at setup, check that every file of the splits in use opens as an image
            (PIL's ``verify``: headers and checksums, no decoding), so that a corrupt file fails
            before training rather than mid-epoch. Turn it off for very large folders.
        num_workers: loader worker processes (8 here by default: decoding JPEGs needs them).
        val_fraction: share of the training folder held out for validation (0.01 here by
            default: ImageNet's training set is large).
        img_size: side of the square images the model receives (224 here by default).
        **kwargs: batch size, split and shape options of the base datamodule.
    """

    @check_ranges("data")
    def __init__(
        self,
        data_dir: str = "data/imagenet",
        num_classes: PositiveInt = 1000,
        train_split: str = "train",
        test_split: str = "val",
        crop_fraction: LeftOpenUnitInterval = 0.875,
        verify_images: bool = True,
        num_workers: NonNegativeInt = 8,
        val_fraction: ZeroToHalf = 0.01,
        img_size: AtLeast8 = 224,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_workers=num_workers, val_fraction=val_fraction, img_size=img_size, **kwargs
        )
        self.data_dir = Path(data_dir).expanduser()
        for split in (train_split, test_split):
            if not (self.data_dir / split).is_dir():
                expected = f"{self.data_dir}/{{{train_split},{test_split}}}/<class>/"
                raise ConfigError(
                    "data.data_dir",
                    f"{str(self.data_dir / split)!r} does not exist (expected {expected}).",
                )
        found = sum(1 for p in (self.data_dir / train_split).iterdir() if p.is_dir())
        if found != num_classes:
            raise ConfigError(
                "data.num_classes",
                f"is {num_classes} but {self.data_dir / train_split} has {found} class folders.",
            )
        self.num_classes = num_classes
        self.train_split, self.test_split = train_split, test_split
        self.crop_fraction = crop_fraction
        self.verify_images = verify_images
        self._verified: set[str] = set()

    def setup(self, stage: str) -> None:
        """Build the stage's datasets, first verifying their image files when asked."""
        if self.verify_images:
            splits = [self.train_split] if stage in ("fit", "validate") else [self.test_split]
            for split in splits:
                if split not in self._verified:
                    verify_image_files(self.data_dir / split)
                    self._verified.add(split)
        super().setup(stage)

    def _transform(self, augment: bool) -> transforms.Compose:
        if not augment:
            return eval_transform(self.img_size, self.crop_fraction, self.in_chans)
        grey = [transforms.Grayscale(1)] if self.in_chans == 1 else []
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(self.img_size),
                transforms.RandomHorizontalFlip(),
                *grey,
                transforms.ToTensor(),
            ]
        )

    def build_train_set(self, augment: bool) -> Dataset:
        """The training folder."""
        return ImageFolder(
            str(self.data_dir / self.train_split), self._transform(augment), loader=load_rgb
        )

    def build_test_set(self) -> Dataset:
        """The held-out folder."""
        return ImageFolder(
            str(self.data_dir / self.test_split), self._transform(False), loader=load_rgb
        )
