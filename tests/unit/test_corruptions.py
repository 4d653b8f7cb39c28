"""Corruption rendering, the on-disk cache, the CIFAR-10-C / ImageNet-C loaders and the metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.corruptions import cifar_c_dataset, imagenet_c_dataset, load_cifar_c
from robust_vit.corruptions import (
    ALEXNET_ERRORS,
    alexnet_reference,
    cache_key,
    corrupt_image,
    corruption_metrics,
    render_corruptions,
)
from robust_vit.errors import ConfigError
from tests.fakes import SLICE, write_image_folder

pytest.importorskip("imagecorruptions")

FEW = ["gaussian_noise", "glass_blur", "contrast"]


def grey_images(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(SLICE)
    images = np.pad(data["x_test"][:n], ((0, 0), (2, 2), (2, 2)))[..., None]
    return images.astype(np.uint8), data["y_test"][:n].astype(np.int64)


@pytest.mark.parametrize("channels", [1, 3])
def test_corrupt_image_is_seeded_and_keeps_shape(channels: int) -> None:
    image = np.repeat(grey_images(1)[0][0], channels, axis=2)
    for name in FEW:
        a = corrupt_image(image, name, 3, seed=7)
        assert a.shape == image.shape and a.dtype == np.uint8
        assert np.array_equal(a, corrupt_image(image, name, 3, seed=7))
    assert not np.array_equal(
        corrupt_image(image, "gaussian_noise", 3, seed=7),
        corrupt_image(image, "gaussian_noise", 3, seed=8),
    )


def test_small_images_are_refused() -> None:
    with pytest.raises(ValueError, match="32x32"):
        corrupt_image(np.zeros((28, 28, 1), np.uint8), "contrast", 1, seed=0)


def test_cache_round_trip_in_the_cifar_c_layout(tmp_path: Path) -> None:
    images, labels = grey_images()
    folder = render_corruptions(images, labels, tmp_path / "cache", FEW, seed=0)
    stored = np.load(folder / "glass_blur.npy")
    assert stored.shape == (5 * len(images), *images.shape[1:]) and stored.dtype == np.uint8
    for severity in (1, 5):
        x, y = load_cifar_c(folder, "glass_blur", severity)
        assert np.array_equal(y, labels)
        expected = [
            corrupt_image(img, "glass_blur", severity, seed=s)
            for img, s in zip(images, _seeds("glass_blur", severity, len(images)), strict=True)
        ]
        assert np.array_equal(x, np.stack(expected))
    before = (folder / "contrast.npy").stat().st_mtime_ns
    assert render_corruptions(images, labels, tmp_path / "cache", FEW, seed=0) == folder
    assert (folder / "contrast.npy").stat().st_mtime_ns == before
    other_seed = render_corruptions(images, labels, tmp_path / "cache", FEW, seed=1)
    assert other_seed != folder and (folder / "contrast.npy").stat().st_mtime_ns == before


def _variants(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The same images changed in one thing a cache must notice."""
    larger = np.pad(images, ((0, 0), (12, 12), (12, 12), (0, 0)))
    return {
        "same": (images.copy(), labels.copy()),
        "larger": (larger, labels),
        "rgb": (np.repeat(images, 3, axis=3), labels),
        "other pixels": (255 - images, labels),
        "one pixel": (
            np.where(np.arange(images.size).reshape(images.shape) == 0, 1, images),
            labels,
        ),
        "fewer": (images[:-1], labels[:-1]),
        "other labels": (images, (labels + 1) % 10),
    }


def test_the_cache_key_changes_with_every_input_that_shapes_the_set() -> None:
    images, labels = grey_images()
    key = cache_key(images, labels, 0, "r1")
    variants = _variants(images, labels)
    keys = {name: cache_key(x, y, 0, "r1") for name, (x, y) in variants.items()}
    assert keys.pop("same") == key
    keys.update(
        seed=cache_key(images, labels, 1, "r1"), renderer=cache_key(images, labels, 0, "r2")
    )
    assert key not in keys.values() and len(set(keys.values())) == len(keys)


@pytest.mark.parametrize("variant", ["larger", "rgb", "other pixels"])
def test_other_images_get_their_own_set_not_the_cached_one(tmp_path: Path, variant: str) -> None:
    images, labels = grey_images()
    first = render_corruptions(images, labels, tmp_path, ["contrast"], seed=0)
    x, y = _variants(images, labels)[variant]
    second = render_corruptions(x, y, tmp_path, ["contrast"], seed=0)
    assert second != first and sorted(tmp_path.iterdir()) == sorted([first, second])
    for folder, source in ((first, images), (second, x)):
        stored, _ = load_cifar_c(folder, "contrast", 2)
        seeds = _seeds("contrast", 2, len(source))
        expected = [
            corrupt_image(img, "contrast", 2, s) for img, s in zip(source, seeds, strict=True)
        ]
        assert np.array_equal(stored, np.stack(expected))


def _seeds(name: str, severity: int, n: int) -> list[int]:
    from robust_vit.corruptions import image_seed

    return [image_seed(0, name, severity, i) for i in range(n)]


def test_cifar_c_loader_on_generated_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5 * 6, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(6), 5))
    data = cifar_c_dataset(tmp_path, "fog", 2, img_size=32, in_chans=3)
    x, y = data[0]
    assert len(data) == 6 and x.shape == (3, 32, 32) and int(y) == 0
    assert np.allclose(x.permute(1, 2, 0).numpy() * 255, images[6])
    np.save(tmp_path / "snow.npy", images[:, :, :, 0])
    with pytest.raises(ConfigError, match="expected uint8"):
        load_cifar_c(tmp_path, "snow", 1)
    with pytest.raises(ConfigError, match="missing"):
        load_cifar_c(tmp_path, "frost", 1)


def test_imagenet_c_loader_reads_the_folder_tree_without_resizing(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "fog", classes=2, per_class=2, size=40, splits=("3",))
    data = imagenet_c_dataset(tmp_path, "fog", 3)
    assert len(data) == 4 and data[0][0].shape == (3, 40, 40)
    with pytest.raises(ConfigError, match="does not exist"):
        imagenet_c_dataset(tmp_path, "fog", 1)


def test_metrics_against_the_alexnet_reference() -> None:
    ref = alexnet_reference()
    same = {c: dict.fromkeys(range(1, 6), 1 - e) for c, e in ALEXNET_ERRORS.items()}
    out = corruption_metrics(same, 1 - ref["clean_error"], ref)
    assert out["mce"] == pytest.approx(1.0) and out["relative_mce"] == pytest.approx(1.0)
    better = {c: dict.fromkeys(range(1, 6), 1 - e / 2) for c, e in ALEXNET_ERRORS.items()}
    assert corruption_metrics(better, 0.9, ref)["mce"] == pytest.approx(0.5)
    assert "mce" not in corruption_metrics(better, 0.9)
