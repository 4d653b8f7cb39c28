"""Turn result records into a markdown table (``robust-vit report RECORD.json ...``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from robust_vit.records import RECORD_NAME, read_record


def flatten_metrics(record: dict[str, Any]) -> dict[str, float]:
    """All ``<stage>.metrics`` of a record in one dict, keyed as logged (``test/acc``)."""
    out: dict[str, float] = {}
    for section in record.values():
        if isinstance(section, dict) and isinstance(section.get("metrics"), dict):
            out.update({k: v for k, v in section["metrics"].items() if v is not None})
    return out


def markdown_table(records: dict[str, dict[str, Any]], keys: list[str] | None = None) -> str:
    """One row per record, one column per metric (``keys``, or every test/val metric found)."""
    flat = {name: flatten_metrics(rec) for name, rec in records.items()}
    if keys is None:
        found = {k for metrics in flat.values() for k in metrics}
        keys = sorted(k for k in found if k.startswith(("test/", "val/")))
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in flat.items():
        cells = [f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def find_records(path: Path, latest: bool) -> list[Path]:
    """Record files at ``path``: the file itself, or those in the folder and below it."""
    if path.is_file():
        return [path]
    found = sorted(path.rglob(RECORD_NAME), key=lambda p: p.stat().st_mtime)
    return found[-1:] if latest else found


def main(argv: list[str]) -> None:
    """Print the table for the given record files or run folders."""
    parser = argparse.ArgumentParser(prog="robust-vit report", description=__doc__)
    parser.add_argument("records", nargs="+", type=Path, help="results.json files or run folders")
    parser.add_argument("--keys", nargs="*", help="metric keys to show (default: test/ and val/)")
    parser.add_argument("--latest", action="store_true",
                        help="for each folder, only its most recently written record")
    ns = parser.parse_args(argv)
    records = {}
    for path in ns.records:
        files = find_records(path, ns.latest)
        if not files:
            parser.error(f"no result record at or under {path}")
        records.update({str(file.parent): read_record(file) for file in files})
    print(markdown_table(records, ns.keys))
