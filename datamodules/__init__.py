"""LightningDataModules: datasets, splits and loaders, all yielding images in [0, 1]."""

from datamodules.base import ImageClassificationDataModule
from datamodules.cifar import CIFARDataModule
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.image_folder import ImageFolderDataModule

__all__ = [
    "CIFARDataModule",
    "FashionMNISTDataModule",
    "ImageClassificationDataModule",
    "ImageFolderDataModule",
]
