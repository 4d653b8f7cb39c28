"""The 15 ImageNet-C corruptions x 5 severities: seeded rendering, an on-disk cache, and metrics.

Rendering uses ``imagecorruptions-imaug`` (import name ``imagecorruptions``, the optional
``corruptions`` extra). The cache follows the CIFAR-10-C layout: one uint8 ``<corruption>.npy``
of shape ``(5 N, H, W, C)`` with severities 1..5 stacked, and ``labels.npy`` of shape ``(5 N,)``.
Its folder is named by :func:`cache_key`, a hash of everything the files depend on, so other
images, another size or seed, or another renderer simply get another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from robust_vit.errors import ConfigError
from robust_vit.records import write_text_atomic

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
SEVERITIES = (1, 2, 3, 4, 5)
SEEDED_BY_ARGUMENT = ("glass_blur", "impulse_noise")
MIN_SIDE = 32  # imagecorruptions' smallest image side
RENDERER = "imagecorruptions-imaug"
RENDERING_VERSION = 1  # of corrupt_image and image_seed: bump when either changes its output

# AlexNet's ImageNet-C top-1 errors averaged over the 5 severities (Hendrycks & Dietterich 2019),
# and its clean top-1 error, the reference of the published CE / mCE / relative mCE.
ALEXNET_ERRORS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 0.4348


def check_corruptions(names: Sequence[str], field: str = "corruptions") -> None:
    """Fail naming the unknown corruption names."""
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ConfigError(field, f"unknown or empty {unknown or names}; choose from {CORRUPTIONS}.")


def image_seed(seed: int, corruption: str, severity: int, index: int) -> int:
    """The seed of one image's corruption: a function of the run seed and where the image sits."""
    entropy = [seed, CORRUPTIONS.index(corruption), severity, index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """One uint8 ``(H, W, C)`` image (C = 1 or 3, H and W >= 32) corrupted, seeded, same shape.

    Grey images are repeated to RGB for the corruption and averaged back. NumPy's global random
    state is seeded for the call and restored after it.
    """
    from imagecorruptions import corrupt

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"need uint8 (H, W, 1|3), got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"imagecorruptions needs at least {MIN_SIDE}x{MIN_SIDE} pixels, got {image.shape[:2]}"
        )
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    kwargs = {"seed": seed} if corruption in SEEDED_BY_ARGUMENT else {}
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        out = corrupt(rgb, severity=severity, corruption_name=corruption, **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out, dtype=np.uint8)[: image.shape[0], : image.shape[1]]
    if image.shape[2] == 1:
        out = np.round(out.astype(np.float32).mean(axis=2, keepdims=True)).astype(np.uint8)
    return out


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def renderer_version(field: str = "corruptions") -> str:
    """Our rendering's version and the installed renderer's, part of every cache key.

    Fails naming ``field`` and the fix when the renderer is not installed.
    """
    try:
        installed = metadata.version(RENDERER)
    except metadata.PackageNotFoundError as err:
        raise ConfigError(
            field,
            f"rendering corruptions needs {RENDERER} (pip install 'robust-vit[corruptions]'), "
            "or point corruptions.data_dir at a pre-rendered set.",
        ) from err
    return f"{RENDERING_VERSION}+{RENDERER}-{installed}"


def cache_key(images: np.ndarray, labels: np.ndarray, seed: int, renderer: str) -> str:
    """The cache folder's name: a hash of everything its files depend on.

    That is the images' bytes and shape (so their number, size and channels), the labels, the
    seed, the severities rendered and the renderer's version. Each corruption is one file named
    after it inside the folder, so a run with other corruption names renders only those.
    """
    header = {
        "shape": list(images.shape),
        "dtype": str(images.dtype),
        "seed": seed,
        "severities": list(SEVERITIES),
        "renderer": renderer,
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def render_corruptions(
    images: np.ndarray,
    labels: np.ndarray,
    cache_dir: str | Path,
    corruptions: Sequence[str] = CORRUPTIONS,
    seed: int = 0,
) -> Path:
    """Render and cache every corruption at the 5 severities (files already there are kept).

    Args:
        images: uint8 ``(N, H, W, C)``.
        labels: int ``(N,)``.
        cache_dir: the cache root; the set goes to ``cache_dir / cache_key(...)``.
        corruptions: names among :data:`CORRUPTIONS`.
        seed: run seed; each image's seed also depends on corruption, severity and index.

    Returns:
        The folder of the set (CIFAR-10-C layout).
    """
    check_corruptions(corruptions)
    renderer = renderer_version()
    out = Path(cache_dir) / cache_key(images, labels, seed, renderer)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "meta.json"
    if not meta_path.is_file():  # for people browsing the cache; the folder name is the key
        meta = {"n": len(images), "shape": list(images.shape[1:]), "seed": seed}
        write_text_atomic(meta_path, json.dumps({**meta, "renderer": renderer}))
    if not (out / "labels.npy").is_file():
        _save_atomic(out / "labels.npy", np.tile(np.asarray(labels, dtype=np.int64), 5))
    for name in corruptions:
        path = out / f"{name}.npy"
        if path.is_file():
            continue
        stacked = np.stack(
            [
                corrupt_image(img, name, s, image_seed(seed, name, s, i))
                for s in SEVERITIES
                for i, img in enumerate(images)
            ]
        )
        _save_atomic(path, stacked)
    return out


def corruption_metrics(
    accuracy: dict[str, dict[int, float]],
    clean_accuracy: float,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean corruption accuracy, and CE / mCE / relative mCE against ``reference``.

    Args:
        accuracy: ``accuracy[corruption][severity]`` in [0, 1].
        clean_accuracy: accuracy on the uncorrupted images.
        reference: ``{"name", "errors": {corruption: mean error}, "clean_error"}``, e.g.
            :func:`alexnet_reference` or :func:`reference_from_record`.
    """
    errors = {c: 1 - float(np.mean(list(by_sev.values()))) for c, by_sev in accuracy.items()}
    out: dict[str, Any] = {"mean_accuracy": 1 - float(np.mean(list(errors.values())))}
    if reference is None:
        return out
    missing = [c for c in errors if c not in reference["errors"]]
    if missing:
        raise ValueError(f"reference {reference['name']!r} has no errors for {missing}")
    ref, ref_clean = reference["errors"], reference["clean_error"]
    clean_error = 1 - clean_accuracy
    ce = {c: e / ref[c] for c, e in errors.items()}
    rel = {c: (e - clean_error) / (ref[c] - ref_clean) for c, e in errors.items()}
    out.update(
        reference=reference["name"],
        ce=ce,
        mce=float(np.mean(list(ce.values()))),
        relative_ce=rel,
        relative_mce=float(np.mean(list(rel.values()))),
    )
    return out


def alexnet_reference() -> dict[str, Any]:
    """AlexNet's published ImageNet-C errors (meaningful for ImageNet-C only)."""
    return {"name": "alexnet", "errors": dict(ALEXNET_ERRORS), "clean_error": ALEXNET_CLEAN_ERROR}


def reference_from_record(
    record: dict[str, Any], stage: str = "test", section: str = "corruptions"
) -> dict[str, Any]:
    """A reference run's mean errors per corruption, read from its result record."""
    result = record[section][stage]
    errors = {
        c: 1 - float(np.mean([v["acc"] for v in by_sev.values()]))
        for c, by_sev in result["accuracy"].items()
    }
    name = record.get("run", {}).get("log_dir", "reference run")
    return {"name": name, "errors": errors, "clean_error": 1 - result["clean"]["acc"]}
