"""An in-memory uint8 image set, fitted to the model's size and channels, lightly augmented."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset


def fit_images(images: Tensor, img_size: int, in_chans: int, upscale: bool = False) -> Tensor:
    """Fit uint8 ``(N, C, H, W)`` images to ``img_size`` and match the channels.

    Larger images are resized (bilinear, antialiased); smaller ones are centre-padded, or resized
    too with ``upscale``.
    """
    if images.shape[1] != in_chans:
        if images.shape[1] == 1:
            images = images.expand(-1, in_chans, -1, -1)
        else:
            images = images.float().mean(dim=1, keepdim=True).round().to(torch.uint8)
    h, w = images.shape[-2:]
    if h > img_size or w > img_size or (upscale and (h, w) != (img_size, img_size)):
        resized = F.interpolate(
            images.float(),
            size=(img_size, img_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        return resized.round().clamp(0, 255).to(torch.uint8).contiguous()
    top, left = (img_size - h) // 2, (img_size - w) // 2
    return F.pad(images, (left, img_size - w - left, top, img_size - h - top)).contiguous()


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor, returned as float ``(C, S, S)`` in [0, 1] with an int label.

    Args:
        images: uint8 ``(N, C, H, W)``.
        labels: int64 ``(N,)``.
        img_size: output side; smaller images are centre-padded, larger ones resized.
        in_chans: output channels.
        augment: random translation by up to ``img_size // 16`` pixels and horizontal flips.
        upscale: resize smaller images to ``img_size`` too, instead of centre-padding them.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        img_size: int,
        in_chans: int,
        augment: bool = False,
        upscale: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = fit_images(images, img_size, in_chans, upscale)
        self.labels = labels.long()
        self.augment = augment
        self.shift = max(1, img_size // 16)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index]
        if self.augment:
            image = self._augment(image)
        return image.float().div_(255.0), self.labels[index]

    def _augment(self, image: Tensor) -> Tensor:
        size = image.shape[-1]
        padded = F.pad(image, (self.shift,) * 4)
        top, left = torch.randint(0, 2 * self.shift + 1, (2,)).tolist()
        image = padded[:, top : top + size, left : left + size]
        return image.flip(-1) if torch.rand(()) < 0.5 else image
