"""The threat type: keys made from it, parsed back (old keys too), labels, the config radius."""

from __future__ import annotations

import pickle

import pytest

from robust_vit.tables import adversarial_table
from robust_vit.threat import (
    PixelRadius,
    Threat,
    UnitPixelRadius,
    canonical_metric_key,
    parse_radius,
    parse_threat,
    radius_text,
)

WHOLE_255THS = [1, 2, 3, 4, 8, 12, 16, 100, 254]


@pytest.mark.parametrize("k", WHOLE_255THS)
def test_linf_key_shows_k_over_255_and_round_trips(k: int) -> None:
    threat = Threat("linf", k / 255)
    assert threat.key == f"linf@{k}/255"
    assert parse_threat(threat.key) == threat
    assert parse_threat(threat.key).key == threat.key


@pytest.mark.parametrize("eps", [0.5, 1.0, 3.0, 0.03, 0.1, 0.25, 1e-5, 4.5 / 255, 0.123456789])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_other_radii_are_plain_numbers_that_round_trip_exactly(norm: str, eps: float) -> None:
    threat = Threat(norm, eps)  # type: ignore[arg-type]
    radius = threat.key.split("@")[1]
    assert "/" not in radius
    assert parse_threat(threat.key) == threat


def test_l2_keys_read_as_written() -> None:
    assert Threat("l2", 0.5).key == "l2@0.5"
    assert parse_threat("l2@0.5") == Threat("l2", 0.5)


@pytest.mark.parametrize("k", WHOLE_255THS)
def test_old_six_digit_keys_map_to_the_same_threat_as_the_new_ones(k: int) -> None:
    old = f"linf@{k / 255:.6g}"
    assert parse_threat(old) == parse_threat(f"linf@{k}/255") == Threat("linf", k / 255)
    assert parse_threat(old).key == f"linf@{k}/255"


def test_a_six_digit_number_off_every_255th_is_not_snapped() -> None:
    assert parse_threat("linf@0.0313726").eps == 0.0313726


@pytest.mark.parametrize("key", ["linf", "linf@", "linf@abc", "l3@0.1", "@0.1", "linf@8/0"])
def test_malformed_threat_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="8/255"):
        parse_threat(key)


def test_labels_come_from_the_type() -> None:
    assert Threat("linf", 8 / 255).label == "L-inf 8/255"
    assert parse_threat("linf@0.0156863").label == "L-inf 4/255"
    assert Threat("l2", 0.5).label == "L2 0.5"
    assert str(Threat("linf", 8 / 255)) == "linf@8/255"


def test_threats_order_by_norm_then_radius() -> None:
    threats = [Threat("linf", 8 / 255), Threat("l2", 0.5), Threat("linf", 1 / 255)]
    assert sorted(threats) == [Threat("l2", 0.5), Threat("linf", 1 / 255), Threat("linf", 8 / 255)]


def test_metric_keys_of_old_records_read_as_logged_now() -> None:
    old = "test/adversarial/pgd20_linf@0.0156863"
    assert canonical_metric_key(old) == "test/adversarial/pgd20_linf@4/255"
    assert canonical_metric_key("test/adversarial/pgd20_linf@4/255") == canonical_metric_key(old)
    assert canonical_metric_key("test/adversarial/pgd20_l2@0.5") == "test/adversarial/pgd20_l2@0.5"
    assert canonical_metric_key("test/acc") == "test/acc"


def test_adversarial_table_of_an_old_record_shows_k_over_255() -> None:
    entry = {"acc": 0.5, "ci": (0.4, 0.6)}
    result = {
        "n": 10,
        "seed": 0,
        "clean": entry,
        "attacks": {"pgd": {"linf@0.0313725": entry, "l2@0.5": entry}},
        "worst_case": {"linf@0.0313725": entry, "l2@0.5": entry},
    }
    header = adversarial_table(result).splitlines()[0]
    assert "L-inf 8/255" in header and "L2 0.5" in header and "0.0313725" not in header


@pytest.mark.parametrize(
    ("text", "eps"),
    [("8/255", 8 / 255), (" 4 / 255 ", 4 / 255), ("0.5", 0.5), ("0", 0.0), (0.25, 0.25), (1, 1.0)],
)
def test_radii_parse_from_fractions_and_numbers(text: str | float, eps: float) -> None:
    assert parse_radius(text) == eps
    assert PixelRadius(text) == eps


@pytest.mark.parametrize("text", ["8/0", "abc", "", "8/255/2", "nan/1", True, None])
def test_malformed_radii_are_refused_with_the_fix(text: object) -> None:
    with pytest.raises(ValueError, match="8/255"):
        PixelRadius(text)


@pytest.mark.parametrize(("kind", "text"), [(PixelRadius, "-1/255"), (UnitPixelRadius, "300/255")])
def test_radii_out_of_range_name_the_restriction(kind: type, text: str) -> None:
    with pytest.raises(ValueError, match="v>=0"):
        kind(text)


def test_the_radius_written_back_is_exact() -> None:
    for k in WHOLE_255THS:
        assert parse_radius(radius_text(k / 255)) == k / 255
    assert radius_text(8 / 255) == "8/255" and radius_text(0.5) == "0.5"


def test_a_parsed_radius_passed_on_plain_pickles_without_our_classes() -> None:
    plain = float(PixelRadius("8/255"))
    assert type(plain) is float
    assert b"robust_vit" not in pickle.dumps(plain)
