"""Turn result records into a markdown table (``robust-vit report RECORD.json ...``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from application.aggregate import delta_table, group_by_seed, group_summary, group_table
from robust_vit.errors import ConfigError
from robust_vit.records import RECORD_NAME, read_record
from robust_vit.tables import adversarial_table, corruption_table
from robust_vit.threat import canonical_metric_key


def flatten_metrics(record: dict[str, Any]) -> dict[str, float]:
    """All ``<stage>.metrics`` of a record in one dict, keyed as logged now (``test/acc``).

    Radii in the keys of records written before :class:`~robust_vit.threat.Threat`
    (``.../pgd20_linf@0.0313725``) read as they are logged now (``.../pgd20_linf@8/255``).
    """
    out: dict[str, float] = {}
    for section in record.values():
        if isinstance(section, dict) and isinstance(section.get("metrics"), dict):
            out.update(
                {canonical_metric_key(k): v for k, v in section["metrics"].items() if v is not None}
            )
    return out


def markdown_table(records: dict[str, dict[str, Any]], keys: list[str] | None = None) -> str:
    """One row per record, one column per metric (``keys``, or every test/val metric found)."""
    flat = {name: flatten_metrics(rec) for name, rec in records.items()}
    if keys is None:
        found = {k for metrics in flat.values() for k in metrics}
        keys = sorted(k for k in found if k.startswith(("test/", "val/")))
    lines = [
        "| run | " + " | ".join(map(canonical_metric_key, keys)) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, metrics in flat.items():
        cells = [f"{metrics[k]:.4f}" if k in metrics else "-" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def robustness_sections(records: dict[str, dict[str, Any]], plot_dir: Path | None) -> str:
    """The adversarial and corruption tables of every record (and their plots in ``plot_dir``)."""
    parts = []
    for name, record in records.items():
        for section, table in (
            ("adversarial", adversarial_table),
            ("corruptions", corruption_table),
        ):
            for stage, result in (record.get(section) or {}).items():
                parts.append(f"\n### {name}: {section} ({stage})\n\n{table(result)}")
                if plot_dir is not None:
                    parts.append(f"plot: {plot_section(section, result, name, stage, plot_dir)}")
    return "\n".join(parts)


def plot_section(
    section: str, result: dict[str, Any], name: str, stage: str, plot_dir: Path
) -> Path:
    """Write the section's plot (accuracy vs epsilon, or the corruption heatmap)."""
    from robust_vit.plots import SECTION_PLOTS

    plot_dir.mkdir(parents=True, exist_ok=True)
    slug = "_".join(Path(name).parts[-2:]).replace("/", "_")
    path = plot_dir / f"{slug}_{section}_{stage}.png"
    return SECTION_PLOTS[section](result, path, f"{name} ({stage})")


def default_keys(metrics: dict[str, dict[str, float]]) -> list[str]:
    """Clean accuracy, every adversarial accuracy and the mean corruption accuracy."""
    found = {k for values in metrics.values() for k in values}
    robust = sorted(k for k in found if k.startswith("test/adversarial/"))
    corrupt = sorted(k for k in found if k.startswith("test/corruptions/"))
    return ["test/acc", *robust, *corrupt]


def grouped_report(
    records: dict[str, dict[str, Any]],
    keys: list[str] | None,
    baseline: str | None,
    plot_dir: Path | None = None,
) -> str:
    """Per-group means with 95% intervals over seeds, and paired deltas against ``baseline``."""
    from robust_vit.plots import group_means

    metrics = {name: flatten_metrics(rec) for name, rec in records.items()}
    groups = group_by_seed(metrics)
    keys = keys or default_keys(metrics)
    parts = [group_table(groups, keys)]
    if baseline is not None:
        parts.append(delta_table(groups, baseline, keys))
    if plot_dir is not None:
        path = group_means(
            group_summary(groups, keys),
            plot_dir / "groups.png",
            "mean and 95% interval across seeds",
        )
        parts.append(f"plot: {path}")
    return "\n\n".join(parts)


def find_records(path: Path, latest: bool) -> list[Path]:
    """Record files at ``path``: the file itself, or those in the folder and below it."""
    if path.is_file():
        return [path]
    found = sorted(path.rglob(RECORD_NAME), key=lambda p: p.stat().st_mtime)
    return found[-1:] if latest else found


def load_record(path: Path) -> dict[str, Any]:
    """The result record at ``path``; a file that is not one fails naming it (ValueError)."""
    try:
        record = read_record(path)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a result record: not JSON ({err}). Remove it, or rerun the run "
            "that wrote it."
        ) from err
    if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
        raise ValueError(
            f"{path} is not a result record: it must map sections (fit, test, ...) to objects. "
            "Remove it, or rerun the run that wrote it."
        )
    return record


def main(argv: list[str]) -> None:
    """Print the table for the given record files or run folders."""
    parser = argparse.ArgumentParser(prog="robust-vit report", description=__doc__)
    parser.add_argument("records", nargs="+", type=Path, help="results.json files or run folders")
    parser.add_argument("--keys", nargs="*", help="metric keys to show (default: test/ and val/)")
    parser.add_argument(
        "--latest",
        action="store_true",
        help="for each folder, only its most recently written record",
    )
    parser.add_argument(
        "--group",
        action="store_true",
        help="aggregate runs in .../<group>/seed<N>/ folders: mean and 95%% "
        "interval across seeds per group",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="with --group: also print each group minus this group, paired by seed",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="folder to write accuracy-vs-epsilon and corruption heatmap PNGs to",
    )
    ns = parser.parse_args(argv)
    records = {}
    for path in ns.records:
        files = find_records(path, ns.latest)
        if not files:
            parser.error(f"no result record at or under {path}")
        try:
            records.update({str(file.parent): load_record(file) for file in files})
        except ValueError as err:
            parser.error(str(err))
    if ns.group:
        try:
            print(grouped_report(records, ns.keys, ns.baseline, ns.plots))
        except ConfigError as err:
            parser.error(str(err))
        return
    print(markdown_table(records, ns.keys))
    robustness = robustness_sections(records, ns.plots)
    if robustness:
        print(robustness)
