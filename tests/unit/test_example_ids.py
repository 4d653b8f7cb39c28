"""A protocol's fixed subset: id-list files read as dataset indices, bad lines named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets import ImageFolder

from callbacks.example_ids import read_example_ids
from robust_vit.errors import ConfigError
from tests.fakes import write_image_folder

FIELD = "example_ids"


def ids_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text(text)
    return path


def test_indices_and_comments_read_in_file_order(tmp_path: Path) -> None:
    data = TensorDataset(torch.zeros(10, 1))
    path = ids_file(tmp_path, "# subset\n7\n\n2  # second\n0\n")
    assert read_example_ids(path, data, FIELD) == [7, 2, 0]


def test_image_paths_map_to_the_folder_indices(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imagenet", classes=3, per_class=2, splits=("",))
    folder = ImageFolder(str(root))
    relative = [Path(p).relative_to(root).as_posix() for p, _ in folder.samples]
    path = ids_file(tmp_path, f"{relative[4]}\n{relative[1]}\n3\n")
    assert read_example_ids(path, folder, FIELD) == [4, 1, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12\n", "index 12, but the dataset has 10"),
        ("3\n3\n", "an example twice"),
        ("a/b.png\n", "not an image folder"),
        ("# nothing\n", "lists no examples"),
    ],
)
def test_bad_files_are_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    data = TensorDataset(torch.zeros(10, 1))
    with pytest.raises(ConfigError, match=message) as info:
        read_example_ids(ids_file(tmp_path, text), data, FIELD)
    assert info.value.field == FIELD


def test_a_path_outside_the_folder_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imagenet", classes=2, per_class=1, splits=("",))
    folder = ImageFolder(str(root))
    with pytest.raises(ConfigError, match="not an image under the dataset's root"):
        read_example_ids(ids_file(tmp_path, "n0/missing.JPEG\n"), folder, FIELD)
    with pytest.raises(ConfigError, match="does not exist"):
        read_example_ids(tmp_path / "none.txt", folder, FIELD)
