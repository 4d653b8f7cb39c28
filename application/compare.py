"""Compare two arms example by example (``robust-vit compare A B``).

A and B are run folders (holding a ``results.json``) or run groups (folders whose ``seed<N>``
subfolders hold runs, as sweeps write them). Every evaluation section of a record references
its per-example outcomes (``record[section][stage]["per_example"] = {"file", "sha256", "n"}``);
for each outcome the two sides share, this prints A's accuracy minus B's with its 95% interval,
p-value and discordant counts (:mod:`robust_vit.paired`), and reads "better" or "worse" only when
the interval excludes 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from application.aggregate import seed_of
from application.report import load_record
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes, read_outcomes
from robust_vit.paired import PairedDifference, holm, paired_difference
from robust_vit.records import RECORD_NAME

# Sections whose stages must reference a per-example file to be compared.
EVALUATION_SECTIONS = ("adversarial", "corruptions", "shifts")
Stage = tuple[str, str]  # (section, stage), e.g. ("adversarial", "test")


@dataclass(frozen=True)
class Side:
    """One arm: its record files by seed (``None`` for a lone run outside ``seed<N>`` folders)."""

    field: str
    records: dict[int | None, Path]

    def describe(self, root: Path) -> str:
        """Where the arm's runs are and how many, for the printed header."""
        if len(self.records) == 1:
            return f"{root} (one run: a single fixed model, no training variance)"
        return f"{root} (seeds {', '.join(map(str, seed_order(self.records)))})"


@dataclass(frozen=True)
class Row:
    """One compared outcome: where it comes from, both accuracies, and the paired difference."""

    stage: Stage
    outcome: str
    accuracy_a: float
    accuracy_b: float
    result: PairedDifference


def seed_order(records: Mapping[int | None, Path]) -> list[int | None]:
    """The seeds of a side in ascending order (a lone run's ``None`` first)."""
    return sorted(records, key=lambda s: -1 if s is None else s)


def find_side(field: str, root: Path) -> Side:
    """The records of a run folder or run group; the newest record when a seed holds several."""
    if root.is_file():
        root = root.parent
    files = sorted(root.rglob(RECORD_NAME), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ConfigError(
            field, f"no {RECORD_NAME} at or under {root}; give a run folder or group."
        )
    if len(files) == 1:
        found = seed_of(files[0].parent)
        return Side(field, {found[1] if found else None: files[0]})
    records: dict[int | None, Path] = {}
    for file in files:
        found = seed_of(file.parent)
        if found is None:
            raise ConfigError(
                field,
                f"{root} holds several records outside seed<N> folders ({file}); give one run "
                "folder, or a group whose seed<N> subfolders hold its runs.",
            )
        records[found[1]] = file  # files are oldest first: the newest wins
    return Side(field, records)


def references(stage: str, result: dict[str, Any]) -> dict[str, Any]:
    """``stage`` -> its ``per_example`` entry, or ``stage.<set>`` -> each shift set's.

    A shift set has examples and a file of its own (``shifts.test.sets.<set>.per_example``).
    """
    if "per_example" in result:
        return {stage: result["per_example"]}
    sets = result.get("sets")
    if not isinstance(sets, dict):
        return {}
    return {
        f"{stage}.{name}": entry["per_example"]
        for name, entry in sets.items()
        if isinstance(entry, dict) and "per_example" in entry
    }


def per_example_files(field: str, record_file: Path) -> dict[Stage, tuple[Path, str]]:
    """``(section, stage) -> (outcomes file, sha256)`` for every evaluation in the record."""
    record = load_record(record_file)
    found: dict[Stage, tuple[Path, str]] = {}
    for section, stages in record.items():
        for stage, result in stages.items():
            if not isinstance(result, dict):
                continue
            found_here = references(stage, result)
            if not found_here and section in EVALUATION_SECTIONS:
                raise ConfigError(
                    field,
                    f"{record_file}: {section}.{stage}.per_example is missing: the record "
                    "must reference its per-example outcomes file ({'file', 'sha256', 'n'}); "
                    "rerun the evaluation with this version to write it.",
                )
            for where, reference in found_here.items():
                path = record_file.parent / reference["file"]
                if not path.is_file():
                    raise ConfigError(
                        field,
                        f"{record_file}: {section}.{where}.per_example.file names {path}, which "
                        "does not exist; restore it beside the record or rerun the evaluation.",
                    )
                found[(section, where)] = (path, reference["sha256"])
    if not found:
        raise ConfigError(
            field,
            f"{record_file} references no per-example outcomes file (e.g. "
            "adversarial.test.per_example); rerun its evaluation with this version.",
        )
    return found


def load_side(side: Side) -> dict[Stage, dict[int | None, Outcomes]]:
    """``(section, stage) -> seed -> outcomes`` of an arm, checked to share stages and columns."""
    loaded: dict[Stage, dict[int | None, Outcomes]] = {}
    for seed, record_file in side.records.items():
        files = per_example_files(side.field, record_file)
        for stage, (path, sha256) in files.items():
            try:
                loaded.setdefault(stage, {})[seed] = read_outcomes(path, sha256)
            except ValueError as err:
                raise ConfigError(side.field, f"{err}; rerun the evaluation.") from err
    for stage, by_seed in loaded.items():
        if len(by_seed) != len(side.records):
            missing = sorted(str(s) for s in side.records if s not in by_seed)
            raise ConfigError(
                side.field,
                f"seeds {', '.join(missing)} have no {'.'.join(stage)} outcomes; rerun them.",
            )
    return loaded


def check_same(what: str, a: set[str], b: set[str]) -> None:
    """Refuse two sides whose sets differ, naming what only one side has."""
    if a != b:
        raise ConfigError(
            "B",
            f"A and B evaluated different {what}: only A has {sorted(a - b)}, only B has "
            f"{sorted(b - a)}; compare runs evaluated the same way.",
        )


def check_examples(where: str, a: Outcomes, b: Outcomes, field: str = "B") -> None:
    """Refuse outcomes over different examples, naming how many and the first that differ.

    ``field`` is what the error names: the command's B, or the arm a page compares.
    """
    if not np.array_equal(a.index.numpy(), b.index.numpy()):
        only = np.setxor1d(a.index.numpy(), b.index.numpy())
        raise ConfigError(
            field,
            f"{where}: A and B evaluated different examples (A {a.n}, B {b.n}; "
            f"{only.size} dataset indices in one only, first {only[:5].tolist()}); compare runs "
            "evaluated on the same examples.",
        )


def stacked(by_seed: Mapping[int | None, Outcomes], seeds: list[int | None], name: str) -> Any:
    """``[seeds, n]`` correct bits of outcome ``name``, rows in ``seeds`` order."""
    rows: list[NDArray[np.bool_]] = [by_seed[s].correct[name].numpy() for s in seeds]
    return np.stack(rows)


def paired_seeds(a: Side, b: Side) -> tuple[list[int | None], list[int | None]]:
    """The row order of each side: the shared seeds in order, or a lone run's one row."""
    if len(a.records) == 1 or len(b.records) == 1:
        return seed_order(a.records), seed_order(b.records)
    check_same("seeds", set(map(str, a.records)), set(map(str, b.records)))
    return seed_order(a.records), seed_order(b.records)


def compare(a_root: Path, b_root: Path, replicates: int, seed: int) -> tuple[Side, Side, list[Row]]:
    """Both arms' sides and one :class:`Row` per outcome they share, in section/stage order."""
    side_a, side_b = find_side("A", a_root), find_side("B", b_root)
    outcomes_a, outcomes_b = load_side(side_a), load_side(side_b)
    check_same("evaluations", {".".join(k) for k in outcomes_a}, {".".join(k) for k in outcomes_b})
    seeds_a, seeds_b = paired_seeds(side_a, side_b)
    rows = []
    for stage in sorted(outcomes_a):
        first = outcomes_a[stage][seeds_a[0]]
        for side, outcomes in ((side_a, outcomes_a), (side_b, outcomes_b)):
            for seed_n, other in outcomes[stage].items():
                where = f"{'.'.join(stage)} of {side.field} seed {seed_n}"
                check_examples(where, first, other)
                check_same(f"outcomes in {where}", set(first.correct), set(other.correct))
        for name in first.correct:
            bits_a = stacked(outcomes_a[stage], seeds_a, name)
            bits_b = stacked(outcomes_b[stage], seeds_b, name)
            result = paired_difference(bits_a, bits_b, replicates, seed)
            rows.append(Row(stage, name, bits_a.mean(), bits_b.mean(), result))
    return side_a, side_b, rows


ALPHA = 0.05  # the family-wise error rate of a table's readings


def points(value: float) -> str:
    """A fraction as signed percentage points."""
    return f"{100 * value:+.2f}"


def table(rows: list[Row]) -> str:
    """The markdown table of the compared outcomes, with Holm's correction over all its rows."""
    adjusted = holm([row.result.p_value for row in rows])
    lines = [
        "| evaluation | outcome | A | B | A - B (points) | 95% interval | p | Holm p "
        "| A right, B wrong | A wrong, B right | n | seeds | reading |",
        "|---" * 13 + "|",
    ]
    for row, holm_p in zip(rows, adjusted, strict=True):
        r = row.result
        seeds = f"{r.seeds} ({r.fixed} fixed)" if r.fixed else str(r.seeds)
        lines.append(
            f"| {'.'.join(row.stage)} | {row.outcome} | {100 * row.accuracy_a:.2f} "
            f"| {100 * row.accuracy_b:.2f} | {points(r.difference)} "
            f"| [{points(r.low)}, {points(r.high)}] | {r.p_value:.3g} | {holm_p:.3g} "
            f"| {r.a_only} | {r.b_only} | {r.n} | {seeds} | {family_reading(r, holm_p)} |"
        )
    return "\n".join(lines)


def family_reading(result: PairedDifference, holm_p: float) -> str:
    """The row's reading, kept as it is only when it survives Holm's correction over the table."""
    if result.reading == "no clear difference" or holm_p < ALPHA:
        return result.reading
    return f"{result.reading} alone, not after Holm"


def main(argv: list[str]) -> None:
    """Print the paired comparison of arm A against arm B."""
    parser = argparse.ArgumentParser(prog="robust-vit compare", description=__doc__)
    parser.add_argument("A", type=Path, help="run folder or run group (seed<N> subfolders)")
    parser.add_argument("B", type=Path, help="run folder or run group to compare A against")
    parser.add_argument("--replicates", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="the bootstrap's RNG seed")
    ns = parser.parse_args(argv)
    try:
        side_a, side_b, rows = compare(ns.A, ns.B, ns.replicates, ns.bootstrap_seed)
    except ConfigError as err:
        print(f"robust-vit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    print(f"A: {side_a.describe(ns.A)}\nB: {side_b.describe(ns.B)}")
    method = rows[0].result.method.value if rows else "-"
    print(f"method: {method}; 'better'/'worse' only when the interval excludes 0\n")
    print(table(rows))
