"""Result records: one JSON file per run, written atomically, that reports are built from."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

RECORD_NAME = "results.json"
TRACKED_PACKAGES = (
    "robust-vit",
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "torchmetrics",
    "jsonargparse",
    "numpy",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def to_jsonable(value: Any) -> Any:
    """Tensors, numpy scalars and paths turned into plain JSON values (NaN becomes null)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure_atomic(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure through a temporary file and a rename (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    """A record, or an empty dict when none exists yet."""
    return json.loads(path.read_text()) if path.is_file() else {}


def update_record(path: Path, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``record[section]`` and rewrite the record atomically."""
    record = read_record(path)
    record.setdefault(section, {}).update(to_jsonable(values))
    write_json_atomic(path, record)
    return record
