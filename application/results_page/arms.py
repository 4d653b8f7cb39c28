"""A sweep's arms as paired inference reads them: per-example outcomes by seed, fixed or trained.

The outcomes are read the way ``robust-vit compare`` reads them (:mod:`application.compare`): the
files each record references, checked against their sha256. An arm whose records reference none
was evaluated before per-example files existed; the page falls back to its seed means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from application.aggregate import seed_of
from application.compare import EVALUATION_SECTIONS, Side, Stage, check_examples, load_side
from robust_vit.outcomes import Outcomes
from robust_vit.records import RECORD_NAME

ADVERSARIAL_TEST: Stage = ("adversarial", "test")


@dataclass(frozen=True)
class ArmOutcomes:
    """One arm's per-example outcomes.

    Args:
        name: the arm (its folder under the sweep).
        field: what an error about it names: its folder, e.g. ``runs/safer/pgd_at``.
        outcomes: ``(section, stage) -> seed -> outcomes``.
        fixed_weights: every seed tested the same weights (a test-only arm: the pretrained or
            early-stopped weights), so the arm carries no training variance.
    """

    name: str
    field: str
    outcomes: dict[Stage, dict[int | None, Outcomes]]
    fixed_weights: bool

    @property
    def seeds(self) -> list[int]:
        """The arm's seeds, ascending."""
        by_seed = self.outcomes.get(ADVERSARIAL_TEST) or next(iter(self.outcomes.values()))
        return sorted(s for s in by_seed if s is not None)

    def rows(self, column: str, seeds: list[int]) -> NDArray[np.bool_]:
        """``[seeds, n]`` correct bits of an adversarial test column, one row per seed."""
        by_seed = self.outcomes[ADVERSARIAL_TEST]
        return np.stack([by_seed[s].correct[column].numpy() for s in seeds])

    def has(self, column: str) -> bool:
        """Whether every seed's adversarial test outcomes hold ``column``."""
        by_seed = self.outcomes.get(ADVERSARIAL_TEST, {})
        return bool(by_seed) and all(column in o.correct for o in by_seed.values())


def references_outcomes(record: dict) -> bool:
    """Whether any evaluation section of a record references a per-example file."""
    return any(
        isinstance(result, dict) and "per_example" in result
        for section in EVALUATION_SECTIONS
        for result in (record.get(section) or {}).values()
    )


def same_weights(records: list[dict]) -> bool:
    """Whether the records tested one fixed model: weights with one digest, none trained.

    Several records qualify when they share the digest; a single record, when it trained nothing
    (a test-only run has no ``fit`` section).
    """
    digests = {(r.get("test") or {}).get("weights_sha256") for r in records}
    if len(digests) != 1 or None in digests:
        return False
    return len(records) > 1 or not any("fit" in r for r in records)


def sweep_arms(sweep_dir: Path, records: dict[str, dict]) -> dict[str, ArmOutcomes]:
    """The arms of a sweep whose records reference per-example files, their outcomes loaded.

    Records are keyed by run folder (as :func:`~application.results_page.runs.read_records`
    gives them); a seed with several records keeps the last in folder order, as the seed means
    do. An arm with some records referencing files and some not is refused by the reading.
    """
    by_arm: dict[str, dict[int, str]] = {}
    for folder in sorted(records):
        found = seed_of(Path(folder))
        if found is not None:
            by_arm.setdefault(Path(found[0]).name, {})[found[1]] = folder
    arms = {}
    for arm, folders in by_arm.items():
        arm_records = [records[f] for f in folders.values()]
        if not any(map(references_outcomes, arm_records)):
            continue
        field = str(sweep_dir / arm)
        side = Side(field, {seed: Path(f) / RECORD_NAME for seed, f in folders.items()})
        arms[arm] = ArmOutcomes(arm, field, load_side(side), same_weights(arm_records))
    return arms


def paired_rows(
    a: ArmOutcomes, b: ArmOutcomes, column: str
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], list[int]] | None:
    """Both arms' ``[seeds, n]`` bits of ``column``, paired by seed, and the seeds used.

    A fixed-weights arm whose seeds all gave the same bits is one row, compared with every
    seed of the other arm; otherwise rows pair by the seeds both arms ran (None: no seed does).
    """
    a_seeds, b_seeds = a.seeds, b.seeds
    fixed_a = a.fixed_weights and single_model(a, column)
    fixed_b = b.fixed_weights and single_model(b, column)
    if fixed_a != fixed_b:
        seeds = b_seeds if fixed_a else a_seeds
        a_used, b_used = (a_seeds[:1], seeds) if fixed_a else (seeds, b_seeds[:1])
    else:
        seeds = sorted(set(a_seeds) & set(b_seeds))
        a_used = b_used = seeds
    if not a_used or not b_used:
        return None
    for side, used in ((a, a_used), (b, b_used)):
        by_seed = side.outcomes[ADVERSARIAL_TEST]
        first = a.outcomes[ADVERSARIAL_TEST][a_used[0]]
        for seed in used:
            where = f"adversarial.test of {side.field} seed {seed}"
            check_examples(where, first, by_seed[seed], field=side.field)
    return a.rows(column, a_used), b.rows(column, b_used), seeds


def single_model(arm: ArmOutcomes, column: str) -> bool:
    """Whether every seed of the arm gave the same bits in ``column`` (one model, one result)."""
    rows = arm.rows(column, arm.seeds)
    return bool((rows == rows[:1]).all())
