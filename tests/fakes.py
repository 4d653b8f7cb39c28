"""Small files in the real on-disk formats, written by the tests (no network, no big data)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SLICE = Path(__file__).parent / "data" / "fashion_mnist_slice.npz"
IDX_TYPE = {np.dtype(np.uint8): 0x08}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as a gzipped idx file."""
    header = bytes([0, 0, IDX_TYPE[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_fashion_mnist(root: Path) -> Path:
    """The committed Fashion-MNIST slice as the four idx files the real dataset ships."""
    data = np.load(SLICE)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", data["x_train"])
    write_idx(root / "train-labels-idx1-ubyte.gz", data["y_train"])
    write_idx(root / "t10k-images-idx3-ubyte.gz", data["x_test"])
    write_idx(root / "t10k-labels-idx1-ubyte.gz", data["y_test"])
    return root


def write_cifar(
    root: Path, num_classes: int = 10, n_train: int = 40, n_test: int = 20, seed: int = 0
) -> Path:
    """Random images in torchvision's CIFAR-10 / CIFAR-100 python-pickle layout."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if num_classes == 10 else "fine_labels"

    def dump(name: str, n: int) -> None:
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            label_key: rng.integers(0, num_classes, n).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)

    if num_classes == 10:
        for i in range(1, 6):
            dump(f"data_batch_{i}", max(1, n_train // 5))
        dump("test_batch", n_test)
    else:
        dump("train", n_train)
        dump("test", n_test)
    return root


def write_image_folder(
    root: Path,
    classes: int = 3,
    per_class: int = 4,
    size: int = 40,
    splits: tuple[str, ...] = ("train", "val"),
    seed: int = 0,
) -> Path:
    """Random RGB PNGs in the ImageNet ``split/class/image`` layout."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


def write_hub_repo(
    cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main"
) -> Path:
    """``files`` as a Hugging Face hub cache holds a download of ``repo_id`` at ``revision``."""
    commit = hashlib.sha1(repo_id.encode() + revision.encode()).hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot
