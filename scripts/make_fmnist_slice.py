"""Regenerate tests/data/fashion_mnist_slice.npz from the Debian package's Fashion-MNIST files.

Keeps the first N_PER_CLASS training and test images of each class (uint8), so the tests run the
real idx loader on real images without the 30 MB dataset. Usage: python scripts/make_fmnist_slice.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.fashion_mnist import default_data_dir, load_split

TRAIN_PER_CLASS = 40
TEST_PER_CLASS = 20
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fashion_mnist_slice.npz"


def first_per_class(
    images: np.ndarray, labels: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` examples of every class, in file order."""
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)]))
    return images[keep], labels[keep]


def main() -> None:
    data_dir = default_data_dir()
    if data_dir is None:
        raise SystemExit("Fashion-MNIST not found: run `make data` first.")
    x_train, y_train = first_per_class(*load_split(data_dir, "train"), TRAIN_PER_CLASS)
    x_test, y_test = first_per_class(*load_split(data_dir, "test"), TEST_PER_CLASS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        x_train=x_train,
        y_train=y_train.astype(np.uint8),
        x_test=x_test,
        y_test=y_test.astype(np.uint8),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
