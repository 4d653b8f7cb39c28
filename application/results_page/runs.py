"""A sweep's runs as the page reads them: records by run folder, metrics by arm and seed."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from application.aggregate import Groups, group_by_seed
from application.report import flatten_metrics
from robust_vit.records import RECORD_NAME, read_record


def read_records(folder: Path) -> dict[str, dict]:
    """The result records under ``folder``, keyed by their run folder."""
    if not folder.is_dir():
        return {}
    return {str(p.parent): read_record(p) for p in sorted(folder.rglob(RECORD_NAME))}


def arm_groups(records: dict[str, dict]) -> Groups:
    """``arm -> seed -> metrics`` of a sweep's records."""
    groups = group_by_seed({k: flatten_metrics(r) for k, r in records.items()})
    return {Path(g).name: by_seed for g, by_seed in groups.items()}


def run_seconds(records: dict[str, dict]) -> float:
    """The summed fit and test time of the records."""
    return sum(
        r.get(stage, {}).get("seconds", 0.0) for r in records.values() for stage in ("fit", "test")
    )


def logged_series(run_dirs: list[Path], key: str) -> list[tuple[float, float]]:
    """``(step, value)`` of ``key`` in the runs' metrics.csv, averaged over runs at each step."""
    by_step: dict[float, list[float]] = {}
    for run_dir in run_dirs:
        for metrics in run_dir.rglob("metrics.csv"):
            with metrics.open() as f:
                for row in csv.DictReader(f):
                    if row.get(key) and row.get("step"):
                        by_step.setdefault(float(row["step"]), []).append(float(row[key]))
    return [(step, statistics.fmean(values)) for step, values in sorted(by_step.items())]
