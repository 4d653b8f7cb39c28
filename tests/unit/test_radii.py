"""Radii read as k/255 in labels, tables and plots."""

from __future__ import annotations

import pytest

from robust_vit.radii import metric_label, radius_label, threat_label
from robust_vit.tables import adversarial_table


@pytest.mark.parametrize("k", [1, 2, 4, 8, 12, 16])
def test_whole_255ths_read_as_k_over_255_also_from_6_digit_keys(k: int) -> None:
    assert radius_label(k / 255) == f"{k}/255"
    assert radius_label(float(f"{k / 255:.6g}")) == f"{k}/255"


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.5, 4.5 / 255])
def test_other_radii_read_as_numbers(eps: float) -> None:
    assert radius_label(eps) == f"{eps:g}"


def test_keys_and_threats_get_the_label() -> None:
    assert threat_label("linf@0.0313725") == "L-inf 8/255"
    assert threat_label("l2@0.5") == "L2 0.5"
    assert (
        metric_label("test/adversarial/pgd20_linf@0.0156863") == "test/adversarial/pgd20_linf@4/255"
    )
    assert metric_label("test/acc") == "test/acc"


def test_adversarial_table_header_shows_k_over_255() -> None:
    entry = {"acc": 0.5, "ci": (0.4, 0.6)}
    result = {
        "n": 10,
        "seed": 0,
        "clean": entry,
        "attacks": {"pgd": {"linf@0.0313725": entry}},
        "worst_case": {"linf@0.0313725": entry},
    }
    header = adversarial_table(result).splitlines()[0]
    assert "L-inf 8/255" in header and "0.0313725" not in header
