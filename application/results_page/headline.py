"""The headline: each comparison's seed-paired difference at the radius the reference arm picks."""

from __future__ import annotations

import math
import statistics
from typing import Any

from application.aggregate import Groups, mean_interval
from application.results_page.claims import Comparison, Sweep
from robust_vit.threat import parse_threat, radius_text

BAND = (0.2, 0.6)  # the reference arm's robust accuracy at a headline radius
CLEAN, CORRUPTIONS = "test/acc", "test/corruptions/mean_acc"


def attack_key(attack: str, eps: float) -> str:
    """The logged key of an attack's test accuracy at ``eps`` (as AdversarialEval writes it)."""
    return f"test/adversarial/{attack}@{radius_text(eps)}"


def radii_of(records: dict[str, dict]) -> list[float]:
    """The L-inf radii the sweep's adversarial evaluations ran at."""
    found = {
        threat.eps
        for r in records.values()
        for key in ((r.get("adversarial") or {}).get("test") or {}).get("worst_case", {})
        for threat in [parse_threat(key)]
        if threat.norm == "linf"
    }
    return sorted(found)


def headline_radius(sweep: Sweep, groups: Groups, radii: list[float]) -> dict[str, Any] | None:
    """The radius whose reference-arm PGD-20 accuracy is nearest the middle of BAND."""
    reference = groups.get(sweep.reference, {})
    scored = []
    for eps in radii:
        values = [
            m[attack_key("pgd20_linf", eps)]
            for m in reference.values()
            if attack_key("pgd20_linf", eps) in m
        ]
        if values:
            scored.append(
                (abs(statistics.fmean(values) - sum(BAND) / 2), eps, statistics.fmean(values))
            )
    if not scored:
        return None
    _, eps, acc = min(scored)
    return {
        "eps": eps,
        "label": radius_text(eps),
        "reference": sweep.reference,
        "reference_pgd20_acc": acc,
        "in_band": BAND[0] <= acc <= BAND[1],
    }


def metric_keys(sweep: Sweep, eps: float | None) -> dict[str, str]:
    """Headline metric label -> logged key, at the headline radius."""
    keys = {"clean": CLEAN}
    if eps is not None:
        keys.update({label: attack_key(attack, eps) for attack, label in sweep.attacks.items()})
    if sweep.corruptions:
        keys["corruptions"] = CORRUPTIONS
    return keys


def paired_difference(groups: Groups, method: str, baseline: str, key: str) -> dict[str, Any]:
    """``method - baseline`` over the seeds both have: mean, 95% half-width, interval, seeds."""
    a, b = groups.get(method, {}), groups.get(baseline, {})
    seeds = sorted(s for s in set(a) & set(b) if key in a[s] and key in b[s])
    if not seeds:
        return {"difference": None, "half_width": None, "ci95": None, "seeds": []}
    mean, half = mean_interval([a[s][key] - b[s][key] for s in seeds])
    finite = math.isfinite(half)
    return {
        "difference": mean,
        "half_width": half if finite else None,
        "ci95": [mean - half, mean + half] if finite else None,
        "seeds": seeds,
    }


def reading(method: str, baseline: str, diff: dict[str, Any]) -> str:
    """What the interval says about the sign of the difference, in words."""
    if diff["difference"] is None:
        return "not run"
    if diff["ci95"] is None:
        return "too few seeds for an interval"
    low, high = diff["ci95"]
    if low > 0:
        return f"{method} better (interval above 0)"
    if high < 0:
        return f"{method} worse (interval below 0)"
    return "no difference shown (interval spans 0)"


def headline_rows(
    comparison: Comparison, groups: Groups, sweep: Sweep, radius: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The comparison's headline rows, one per metric, as numbers."""
    eps = radius["eps"] if radius else None
    rows = []
    for label, key in metric_keys(sweep, eps).items():
        diff = paired_difference(groups, comparison.method, comparison.baseline, key)
        is_attack = key not in (CLEAN, CORRUPTIONS)
        rows.append(
            {
                "sweep": comparison.sweep,
                "method": comparison.method,
                "baseline": comparison.baseline,
                "role": comparison.role,
                "metric": f"{label} {radius_text(eps)}" if is_attack and eps is not None else label,
                "key": key,
                "eps": eps if is_attack else None,
                "claim": comparison.claims.get(label, "not reported"),
                **diff,
                "reading": reading(comparison.method, comparison.baseline, diff),
            }
        )
    return rows


def points(value: float | None) -> str:
    """A difference in accuracy points, signed."""
    return "-" if value is None else f"{100 * value:+.2f}"


def headline_table(rows: list[dict[str, Any]]) -> str:
    """The markdown headline: claim and its comparison, ours, the interval, seeds, reading."""
    lines = [
        "| paper's claim (the paper's comparison) | our comparison | metric | ours: "
        "difference, points [95% CI] | seeds | reading |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci = row["ci95"]
        ours = points(row["difference"]) + (f" [{points(ci[0])}, {points(ci[1])}]" if ci else "")
        lines.append(
            f"| {row['claim']} | {row['method']} - {row['baseline']} ({row['role']}) | "
            f"{row['metric']} | {ours} | {len(row['seeds'])} | {row['reading']} |"
        )
    return "\n".join(lines)
