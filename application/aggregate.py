"""Aggregate result records across seeds: mean and 95% interval per method, paired deltas."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scipy import stats

from robust_vit.errors import ConfigError
from robust_vit.threat import canonical_metric_key

SEED_FOLDER = re.compile(r"^seed(\d+)$")
Groups = dict[str, dict[int, dict[str, float]]]


def seed_of(record_dir: Path) -> tuple[str, int] | None:
    """``(group, seed)`` for a run folder under ``.../<group>/seed<N>/...``, else None."""
    for i, part in enumerate(record_dir.parts):
        match = SEED_FOLDER.match(part)
        if match:
            return str(Path(*record_dir.parts[:i])), int(match.group(1))
    return None


def group_by_seed(metrics: dict[str, dict[str, float]]) -> Groups:
    """Runs keyed by folder, regrouped as ``group -> seed -> metrics``."""
    groups: Groups = {}
    for folder, values in metrics.items():
        found = seed_of(Path(folder))
        if found is not None:
            groups.setdefault(found[0], {})[found[1]] = values
    return groups


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (nan with fewer than 2 values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * sem


def group_summary(groups: Groups, keys: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """``group -> key -> (mean, half-width)`` over each group's seeds."""
    return {
        group: {
            k: mean_interval([m[k] for m in by_seed.values() if k in m])
            for k in keys
            if any(k in m for m in by_seed.values())
        }
        for group, by_seed in sorted(groups.items())
    }


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, half = mean_interval(values)
    return f"{mean:.4f} ± {half:.4f}" if math.isfinite(half) else f"{mean:.4f}"


def group_table(groups: Groups, keys: list[str]) -> str:
    """One row per group: mean ± 95% interval over its seeds for every key."""
    lines = [
        "| group | seeds | " + " | ".join(map(canonical_metric_key, keys)) + " |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for group, by_seed in sorted(groups.items()):
        cells = [_cell([m[k] for m in by_seed.values() if k in m]) for k in keys]
        lines.append(f"| {group} | {len(by_seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def delta_table(groups: Groups, baseline: str, keys: list[str]) -> str:
    """Each group minus ``baseline``, paired by seed: mean ± 95% interval of the differences."""
    base = next((by_seed for g, by_seed in groups.items() if Path(g).name == baseline), None)
    if base is None:
        raise ConfigError(
            "baseline",
            f"no group named {baseline!r} among {sorted(groups)}; name one of their last parts.",
        )
    lines = [
        f"| group minus {baseline} | pairs | " + " | ".join(map(canonical_metric_key, keys)) + " |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for group, by_seed in sorted(groups.items()):
        if Path(group).name == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        cells = [
            _cell([by_seed[s][k] - base[s][k] for s in seeds if k in by_seed[s] and k in base[s]])
            for k in keys
        ]
        lines.append(f"| {group} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_result(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first of same-layout result sections with every ``acc`` averaged over all of them.

    Used to plot a method's accuracy-vs-epsilon or corruption heatmap as its mean over seeds.
    """
    mean: dict[str, Any] = {}
    for key, value in results[0].items():
        if key == "acc":
            mean[key] = statistics.fmean(r[key] for r in results)
        elif isinstance(value, dict):
            mean[key] = mean_result([r[key] for r in results])
        else:
            mean[key] = value
    return mean
