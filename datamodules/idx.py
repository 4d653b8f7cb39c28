"""Read the idx files that MNIST-style datasets ship (plain or gzip), checking their size."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from robust_vit.errors import ConfigError

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path, field: str = "data.data_dir") -> np.ndarray:
    """The array stored in an idx file; a truncated or foreign file fails naming the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ConfigError(
            field, f"cannot read {str(path)!r} ({err}); re-fetch the dataset."
        ) from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ConfigError(field, f"{str(path)!r} is not an idx file (bad magic number).")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(
            field,
            f"{str(path)!r} is truncated or padded: {len(raw)} bytes where its header {shape} "
            f"implies {expected}; re-fetch the dataset.",
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
