"""The headline: each comparison's paired difference at the radius the reference arm picks.

Each row pairs the two arms' per-example outcomes by example and seed
(:func:`robust_vit.paired.paired_difference`: its interval carries both the seeds' and the test
set's sampling error), and the family of such rows is corrected with Holm's method. Rows whose
records hold no per-example files keep the seed-paired t-interval over seed means and say so;
they never read "better" or "worse".
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from application.aggregate import Groups, mean_interval
from application.compare import family_reading
from application.results_page.arms import ArmOutcomes, paired_rows
from application.results_page.claims import Comparison, Sweep
from robust_vit.paired import holm, paired_difference
from robust_vit.threat import parse_threat, radius_text

BAND = (0.2, 0.6)  # the reference arm's robust accuracy at a headline radius
CLEAN, CORRUPTIONS = "test/acc", "test/corruptions/mean_acc"
REPLICATES = 2000  # bootstrap replicates of a paired row with several seeds
SEED_MEANS = "seed-paired t-interval over seed means, test-set error not included"
NO_FILES_NOTE = f"no per-example files: {SEED_MEANS}"
CORRUPTION_NOTE = f"corruption mean: a share per example, not a correct bit: {SEED_MEANS}"


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


def seed_mean_difference(
    groups: Groups, method: str, baseline: str, key: str, fixed: str | None = None
) -> dict[str, Any]:
    """``method - baseline`` over the seeds both have: mean, 95% half-width, interval, seeds.

    The fallback where per-example files are missing: a t-interval over seed means, blind to
    the test set's own sampling error. ``fixed`` names the side that is one fixed model tested
    once (``"method"`` or ``"baseline"``, see :func:`fixed_side`): its one value is paired with
    every seed of the other side.
    """
    a, b = groups.get(method, {}), groups.get(baseline, {})
    a = {s: v for s, v in a.items() if key in v}
    b = {s: v for s, v in b.items() if key in v}
    if fixed == "baseline" and len(b) == 1:
        b = dict.fromkeys(a, next(iter(b.values())))
    elif fixed == "method" and len(a) == 1:
        a = dict.fromkeys(b, next(iter(a.values())))
    seeds = sorted(set(a) & set(b))
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


def seed_mean_reading(diff: dict[str, Any]) -> str:
    """What a seed-means interval says, never "better" or "worse": it leaves out the test set."""
    if diff["difference"] is None:
        return "not run"
    if diff["ci95"] is None:
        return "too few seeds for an interval"
    low, high = diff["ci95"]
    side = "above 0" if low > 0 else "below 0" if high < 0 else "spans 0"
    return f"seed means only: interval {side}, not read as a difference"


def outcome_column(key: str) -> str | None:
    """The adversarial test outcome column of a headline key (None: the corruption mean)."""
    if key == CLEAN:
        return "clean"
    if key == CORRUPTIONS:
        return None
    return key.removeprefix("test/adversarial/")


def fixed_side(method: ArmOutcomes, baseline: ArmOutcomes) -> str | None:
    """Which side is one fixed model (``method`` or ``baseline``), carrying no training variance."""
    if baseline.fixed_weights and not method.fixed_weights:
        return "baseline"
    if method.fixed_weights and not baseline.fixed_weights:
        return "method"
    return None


def paired_row(
    method: ArmOutcomes, baseline: ArmOutcomes, column: str, replicates: int
) -> dict[str, Any] | None:
    """The per-example paired difference of ``column`` (None: the arms share no seed)."""
    paired = paired_rows(method, baseline, column)
    if paired is None:
        return None
    a, b, seeds = paired
    r = paired_difference(a, b, replicates)
    return {
        "inference": r.method.value,
        "difference": r.difference,
        "half_width": None,
        "ci95": [r.low, r.high],
        "seeds": seeds,
        "n": r.n,
        "method_only": r.a_only,
        "baseline_only": r.b_only,
        "p": r.p_value,
        "fixed": fixed_side(method, baseline),
        "note": None,
        "result": r,
    }


def fallback_row(
    groups: Groups, comparison: Comparison, key: str, note: str, fixed: str | None
) -> dict[str, Any]:
    """The seed-means row, saying why it is not per-example paired."""
    diff = seed_mean_difference(groups, comparison.method, comparison.baseline, key, fixed)
    return {
        "inference": "seed-paired t-interval over seed means",
        **diff,
        "n": None,
        "method_only": None,
        "baseline_only": None,
        "p": None,
        "fixed": fixed,
        "note": note,
        "reading": seed_mean_reading(diff),
    }


def headline_rows(
    comparison: Comparison,
    groups: Groups,
    arms: dict[str, ArmOutcomes],
    sweep: Sweep,
    radius: dict[str, Any] | None,
    replicates: int = REPLICATES,
) -> list[dict[str, Any]]:
    """The comparison's headline rows, one per metric, before Holm's correction (see read_family).

    A row is paired per example and seed where both arms reference per-example files; otherwise
    it keeps the seed means, with a note saying why.
    """
    eps = radius["eps"] if radius else None
    method, baseline = arms.get(comparison.method), arms.get(comparison.baseline)
    fixed = fixed_side(method, baseline) if method and baseline else None
    rows = []
    for label, key in metric_keys(sweep, eps).items():
        column = outcome_column(key)
        paired = None
        if column is None:
            note = CORRUPTION_NOTE
        elif method is None or baseline is None:
            note = NO_FILES_NOTE
        elif not (method.has(column) and baseline.has(column)):
            note = f"no per-example column {column}: {SEED_MEANS}"
        else:
            paired = paired_row(method, baseline, column, replicates)
            note = f"the arms share no seed: {SEED_MEANS}"
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
                **(paired or fallback_row(groups, comparison, key, note, fixed)),
            }
        )
    return rows


def read_family(
    rows: list[dict[str, Any]], families: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The rows with Holm's p over each family's paired rows and their readings.

    ``families`` maps a sweep to its family (a study); a sweep it does not name is a family of
    its own. A paired row reads better or worse only when its interval excludes 0 and it
    survives Holm (:func:`application.compare.family_reading`); seed-means rows keep their own
    reading.
    """
    family_of = {row["sweep"]: (families or {}).get(row["sweep"], row["sweep"]) for row in rows}
    holm_of: dict[int, float] = {}
    for family in dict.fromkeys(family_of.values()):
        paired = [row for row in rows if "result" in row and family_of[row["sweep"]] == family]
        adjusted = holm([row["result"].p_value for row in paired])
        holm_of.update({id(row): p for row, p in zip(paired, adjusted, strict=True)})
    out = []
    for row in rows:
        if id(row) not in holm_of:
            out.append({**row, "holm_p": None})
            continue
        fields = {k: v for k, v in row.items() if k != "result"}
        reading = family_reading(row["result"], holm_of[id(row)])
        if reading != "no clear difference":
            reading = f"{row['method']} {reading}"
        out.append({**fields, "holm_p": holm_of[id(row)], "reading": reading})
    return out


def points(value: float | None) -> str:
    """A difference in accuracy points, signed."""
    return "-" if value is None else f"{100 * value:+.2f}"


def seeds_cell(row: dict[str, Any]) -> str:
    """The row's seeds, and which side is one fixed model."""
    seeds = str(len(row["seeds"]))
    return f"{seeds} ({row[row['fixed']]} fixed)" if row["fixed"] else seeds


def headline_table(rows: list[dict[str, Any]]) -> str:
    """The markdown headline: claim, comparison, difference and interval, p, Holm p, counts."""
    lines = [
        "| paper's claim (the paper's comparison) | our comparison | metric | ours: "
        "difference, points [95% CI] | p | Holm p | method right, baseline wrong | method "
        "wrong, baseline right | n | seeds | reading |",
        "|---" * 11 + "|",
    ]
    for row in rows:
        ci = row["ci95"]
        ours = points(row["difference"]) + (f" [{points(ci[0])}, {points(ci[1])}]" if ci else "")
        if row["note"]:
            ours += f" ({row['note']})"
        cells = [
            "-" if row[k] is None else f"{row[k]:.3g}" if k.endswith("p") else str(row[k])
            for k in ("p", "holm_p", "method_only", "baseline_only", "n")
        ]
        lines.append(
            f"| {row['claim']} | {row['method']} - {row['baseline']} ({row['role']}) | "
            f"{row['metric']} | {ours} | {' | '.join(cells)} | {seeds_cell(row)} "
            f"| {row['reading']} |"
        )
    return "\n".join(lines)
