"""benchmarks/evaluate_agreement.py: outcomes of two runs compared on the examples both hold."""

from __future__ import annotations

import torch

from benchmarks.evaluate_agreement import agreement
from robust_vit.outcomes import Outcomes


def test_agreement_counts_shared_examples_and_shared_columns_only() -> None:
    a = Outcomes(
        torch.tensor([0, 1, 2, 3]),
        {"clean": torch.tensor([True, True, False, True]), "fgsm": torch.ones(4, dtype=torch.bool)},
    )
    b = Outcomes(torch.tensor([1, 3, 9]), {"clean": torch.tensor([True, False, False])})
    assert agreement(a, b) == {"clean": (2, 2, 1, 1)}  # examples 1 and 3; they differ on 3
