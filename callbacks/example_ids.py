"""A fixed evaluation subset read from a file: the examples a protocol names, as dataset indices.

The file has one example per line (blank lines and ``#`` comments are skipped), each either:
- a dataset index (``17``), for any dataset; or
- an image path relative to the image folder's root (``n01440764/ILSVRC2012_val_00000293.JPEG``,
  as RobustBench lists its 5000-image ImageNet subset), for image-folder datasets.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from robust_vit.errors import ConfigError


def read_example_ids(path: str | Path, dataset: Dataset, field: str) -> list[int]:
    """The dataset indices the file at ``path`` lists, in its order; ``field`` names the option."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(field, f"{str(file)!r} does not exist: point it at the id-list file.")
    lines = [
        line.split("#", 1)[0].strip() for line in file.read_text(encoding="utf-8").splitlines()
    ]
    ids = [line for line in lines if line]
    if not ids:
        raise ConfigError(field, f"{str(file)!r} lists no examples.")
    size = len(dataset)  # type: ignore[arg-type]
    by_path = _relative_paths(dataset)
    indices = []
    for line_id in ids:
        if line_id.isdigit():
            index = int(line_id)
            if index >= size:
                raise ConfigError(
                    field, f"{str(file)!r} lists index {index}, but the dataset has {size}."
                )
        elif by_path is None:
            raise ConfigError(
                field,
                f"{str(file)!r} lists {line_id!r}, a path, but this dataset is not an image "
                "folder: list dataset indices instead.",
            )
        elif line_id not in by_path:
            raise ConfigError(
                field,
                f"{str(file)!r} lists {line_id!r}, which is not an image under the dataset's "
                "root (paths are relative to it, e.g. <class>/<file>).",
            )
        else:
            index = by_path[line_id]
        indices.append(index)
    if len(set(indices)) != len(indices):
        raise ConfigError(field, f"{str(file)!r} lists an example twice.")
    return indices


def _relative_paths(dataset: Dataset) -> dict[str, int] | None:
    """Image path relative to the root -> index, for torchvision image folders; else None."""
    samples, root = getattr(dataset, "samples", None), getattr(dataset, "root", None)
    if samples is None or root is None:
        return None
    return {Path(os.path.relpath(path, root)).as_posix(): i for i, (path, _) in enumerate(samples)}
