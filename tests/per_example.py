"""Reading a record's per-example files back, and what their columns must sum to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robust_vit.attacks import CLEAN, WORST
from robust_vit.outcomes import Outcomes, attack_column, corruption_column, read_outcomes
from robust_vit.threat import parse_threat


def read_per_example(record_dir: Path, entry: dict[str, Any]) -> Outcomes:
    """The file a record entry's ``per_example`` names, checked against its sha256 and n."""
    outcomes = read_outcomes(record_dir / entry["file"], entry["sha256"])
    assert outcomes.n == entry["n"]
    return outcomes


def adversarial_summaries(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An adversarial section's proportions, keyed by the column each must equal."""
    summaries = {CLEAN: section["clean"]}
    for name, by_threat in {**section["attacks"], WORST: section["worst_case"]}.items():
        for key, proportion in by_threat.items():
            summaries[attack_column(name, parse_threat(key))] = proportion
    return summaries


def corruption_summaries(section: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A corruption section's proportions (clean when it scored clean), keyed by column."""
    summaries = {
        corruption_column(name, int(severity)): proportion
        for name, by_severity in section["accuracy"].items()
        for severity, proportion in by_severity.items()
    }
    if section["clean"]["n"]:
        summaries[CLEAN] = section["clean"]
    return summaries


def assert_summaries_match(outcomes: Outcomes, summaries: dict[str, dict[str, Any]]) -> None:
    """Every column gives exactly its recorded count, n and accuracy; no column is unrecorded."""
    assert set(outcomes.correct) == set(summaries)
    for column, proportion in summaries.items():
        correct = int(torch.count_nonzero(outcomes.correct[column]))
        assert (correct, outcomes.n) == (proportion["correct"], proportion["n"]), column
        assert correct / outcomes.n == proportion["acc"], column
