"""Does ``robust-vit evaluate`` score weights as the run that trained them did, example by example?

For two run folders (each holding a ``results.json``), prints, per outcome column both
evaluation sections hold, on the examples both evaluated: each side's correct count and how many
examples agree, then each record's test weights digest::

    python benchmarks/evaluate_agreement.py docs/records/real/pretrained/seed0/version_0 \
        docs/records/evaluate/real_stage0/version_0

Sections of other suites share their ``clean`` and ``worst_case@<radius>`` columns
(``--section_b autoattack``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robust_vit.outcomes import Outcomes, read_outcomes
from robust_vit.records import RECORD_NAME


def section_outcomes(run: Path, section: str) -> tuple[dict, Outcomes]:
    """The run's record, and the per-example outcomes of its ``section`` at test."""
    record = json.loads((run / RECORD_NAME).read_text())
    return record, read_outcomes(run / record[section]["test"]["per_example"]["file"])


def agreement(a: Outcomes, b: Outcomes) -> dict[str, tuple[int, int, int, int]]:
    """Per shared column: (shared examples, A correct, B correct, agreeing examples)."""
    shared = sorted(set(a.index.tolist()) & set(b.index.tolist()))
    rows_a = {int(i): k for k, i in enumerate(a.index.tolist())}
    rows_b = {int(i): k for k, i in enumerate(b.index.tolist())}
    pick_a = torch.tensor([rows_a[i] for i in shared], dtype=torch.long)
    pick_b = torch.tensor([rows_b[i] for i in shared], dtype=torch.long)
    out = {}
    for column in sorted(set(a.correct) & set(b.correct)):
        bits_a, bits_b = a.correct[column][pick_a], b.correct[column][pick_b]
        agree = int((bits_a == bits_b).sum())
        out[column] = (len(shared), int(bits_a.sum()), int(bits_b.sum()), agree)
    return out


def main() -> None:
    """Print the agreement of two runs' evaluations and their test weights digests."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("a", type=Path, help="run folder (the trained run's)")
    p.add_argument("b", type=Path, help="run folder (robust-vit evaluate's)")
    p.add_argument("--section", default="adversarial", help="A's evaluation section")
    p.add_argument("--section_b", help="B's evaluation section (default: --section)")
    ns = p.parse_args()
    record_a, outcomes_a = section_outcomes(ns.a, ns.section)
    record_b, outcomes_b = section_outcomes(ns.b, ns.section_b or ns.section)
    for column, (n, correct_a, correct_b, agree) in agreement(outcomes_a, outcomes_b).items():
        print(f"{column}: {n} shared examples, A {correct_a} correct, B {correct_b}, {agree} agree")
    for name, record in (("A", record_a), ("B", record_b)):
        print(f"{name} test weights sha256 {record['test']['weights_sha256']}")


if __name__ == "__main__":
    main()
