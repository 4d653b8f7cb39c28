from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from datamodules.idx import read_idx
from robust_vit.errors import ConfigError
from tests.fakes import write_idx


def test_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.gz", np.zeros((10, 28, 28), np.uint8))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ConfigError, match=r"a\.gz.*truncated"):
        read_idx(path)


def test_foreign_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x89PNG....")
    with pytest.raises(ConfigError, match="not an idx file"):
        read_idx(path)
