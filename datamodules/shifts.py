"""Distribution-shift test sets as image folders: ImageNet-A/R, Sketch, V2, Stylized-ImageNet.

Class folders are WordNet ids (``n01440764``), mapped to the 1000-class indices of the ImageNet
class order, or, as ImageNetV2 ships them, the class indices themselves (``0`` .. ``999``).
ImageNet-A and -R hold 200 of the classes and are scored with the logits of those 200 only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import ImageFolder

from datamodules.image_folder import eval_transform, load_rgb
from robust_vit.errors import ConfigError

SHIFT_SETS = {
    "imagenet_a": True,
    "imagenet_r": True,
    "imagenet_sketch": False,
    "imagenetv2": False,
    "stylized_imagenet": False,
}
"""The supported sets, each with whether it is scored over its own classes only (logit mask)."""


def imagenet_class_index(source: str | Path, field: str = "class_index") -> dict[str, int]:
    """WordNet id to class index: a text file (one id a line, in order) or a ``train`` folder.

    A folder gives its class subfolders in sorted order, the order ``ImageFolder`` trains with.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        names = sorted(p.name for p in os.scandir(path) if p.is_dir())
    elif path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        raise ConfigError(
            field,
            f"{str(path)!r} is neither the ImageNet train folder nor a text "
            "file of WordNet ids (one a line, in class-index order).",
        )
    if not names or len(set(names)) != len(names):
        raise ConfigError(
            field,
            f"{str(path)!r} lists {len(names)} classes with duplicates or "
            "none; it must name each class once.",
        )
    return {name: i for i, name in enumerate(names)}


class ShiftFolder(ImageFolder):
    """``root/<class>/<image>`` whose targets are indices of the full class order.

    Args:
        root: the set's folder of class folders.
        class_index: WordNet id to class index (see :func:`imagenet_class_index`).
        img_size: model input size.
        crop_fraction: evaluation centre-crop fraction, as for the ImageNet folders.
        in_chans: model input channels.
        field: config key named in errors.
    """

    def __init__(
        self,
        root: str | Path,
        class_index: dict[str, int],
        img_size: int,
        crop_fraction: float = 0.875,
        in_chans: int = 3,
        field: str = "shifts.sets",
    ) -> None:
        if not Path(root).is_dir():
            raise ConfigError(field, f"{str(root)!r} is not a directory of class folders.")
        self.class_index, self.field = class_index, field
        super().__init__(
            str(root), eval_transform(img_size, crop_fraction, in_chans), loader=load_rgb
        )

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        """Class folder names and their indices in the full class order."""
        names = sorted(p.name for p in os.scandir(directory) if p.is_dir())
        if not names:
            raise ConfigError(self.field, f"{str(directory)!r} has no class folders.")
        return names, {name: self._label(name, directory) for name in names}

    def _label(self, name: str, directory: str | Path) -> int:
        if name in self.class_index:
            return self.class_index[name]
        if name.isdigit() and int(name) < len(self.class_index):
            return int(name)
        raise ConfigError(
            self.field,
            f"class folder {name!r} of {str(directory)!r} is neither a "
            "WordNet id of the class index nor an index below "
            f"{len(self.class_index)}.",
        )

    def class_mask(self, num_classes: int) -> Tensor:
        """Boolean ``(num_classes,)``: the classes that have a folder in this set."""
        mask = torch.zeros(num_classes, dtype=torch.bool)
        mask[sorted(set(self.class_to_idx.values()))] = True
        return mask
