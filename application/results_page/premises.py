"""The page's tests of the papers' premises, from the summaries their commands write.

- SAFER: do the sharpest layers carry the robust overfitting? ``make rollback`` writes
  ``safer_rollback/rollback.json`` (benchmarks/safer_rollback.py): each layer's rollback gain
  beside its sharpness, Spearman's rho with a permutation p-value, the top-k overlap.
- ANF: does nullspace finetuning enlarge the approximate nullspace? ``make anf-nullspace`` writes
  ``anf_nullspace/nullspace_size.json`` (benchmarks/anf_nullspace_size.py): per arm and seed the
  largest passing token-noise norm and the random pass fractions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from application.aggregate import mean_interval
from robust_vit.plots import rollback_vs_sharpness

ROLLBACK = Path("safer_rollback") / "rollback.json"
NULLSPACE = Path("anf_nullspace") / "nullspace_size.json"
ALPHA = 0.05


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the command did not run."""
    return json.loads(path.read_text()) if path.is_file() else None


def sharpness_verdict(report: dict[str, Any]) -> str:
    """Whether sharpness finds the layers that carry the overfitting, in one sentence."""
    rho, p = report["spearman"]["rho"], report["spearman"]["permutation_p"]
    top = report["top_k"]
    overlap = (
        f"{top['overlap']} of the top {top['k']} layers are shared (chance "
        f"{top['chance_overlap']:.2f})"
    )
    if rho is None:
        return f"Undecided: one scoring is the same for every layer; {overlap}."
    found = rho > 0 and p < ALPHA
    return (
        f"Sharpness {'finds' if found else 'does not find'} the layers that carry the robust "
        f"overfitting here: Spearman rho {rho:.2f} between sharpness and rollback gain "
        f"(permutation p {p:.3g}), and {overlap}."
    )


def rollback_section(runs: Path, docs: Path) -> tuple[str, dict[str, Any] | None]:
    """SAFER's premise: the per-layer table, the verdict and the plot; with its JSON twin."""
    report = read_json(runs / ROLLBACK)
    if report is None:
        return (
            f"## SAFER's premise: layer rollback\n\nNot run: `make rollback` writes {ROLLBACK}.\n",
            None,
        )
    layers = report["layers"]
    sharpness = {row["layer"]: row["sharpness"] for row in layers}
    gains = {row["layer"]: row["rollback_gain"] for row in layers}
    top = report["top_k"]
    plot = rollback_vs_sharpness(
        sharpness,
        gains,
        (top["sharpest"], top["largest_gain"]),
        docs / "results" / "safer_rollback.png",
        "SAFER's premise: each layer's rollback gain beside its sharpness (stage-1 last weights)",
    )
    acc, val = report["robust_acc"], report["validation"]
    rows = "\n".join(
        f"| {row['layer']} | {row['sharpness']:.4g} | {row['sharpness_rank']:g} | "
        f"{100 * row['rollback_gain']:+.1f} | {row['gain_rank']:g} |"
        for row in layers
    )
    text = (
        "## SAFER's premise: layer rollback\n\n"
        "`make rollback`: from the overfit stage-1 weights, each candidate layer in turn is put "
        "back to the early-stopped weights and the stage-1 robust validation is measured again "
        f"({val['attack']} at {val['eps']:.4f}, {val['examples']} held-out images). The rise is "
        "how much of the robust overfitting that layer carries; SAFER's sharpness is scored on "
        f"the same weights as its stage 2 scores them. Robust accuracy: last {acc['last']:.3f}, "
        f"early-stopped {acc['best']:.3f}.\n\n**{sharpness_verdict(report)}** The oracle arm "
        "(`safer_oracle`) selects by these gains; its row in the headline is what choosing the "
        "layers well can buy.\n\n"
        "| layer | sharpness | rank | rollback gain (points) | rank |\n|---|---|---|---|---|\n"
        f"{rows}\n\n![rollback vs sharpness]({plot.relative_to(docs)})\n"
    )
    return text, {
        "robust_acc": acc,
        "spearman": report["spearman"],
        "top_k": top,
        "verdict": sharpness_verdict(report),
    }


def interval_text(mean: float, half: float | None, digits: int = 2) -> str:
    """``mean ± half`` (the mean alone without an interval)."""
    if half is None or not math.isfinite(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def paired_by_seed(arms: dict[str, Any], arm: str, baseline: str, key: str) -> list[float] | None:
    """``arm - baseline`` of one quantity for every seed both measured, or None."""
    a, b = arms[arm]["seeds"], arms[baseline]["seeds"]
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None

    def value(entry: dict[str, Any]) -> float:
        if key == "largest_passing_norm":
            return float(entry[key])
        return float(entry["random_pass_fraction"][key])

    return [value(a[s]) - value(b[s]) for s in seeds]


def nullspace_section(runs: Path) -> tuple[str, dict[str, Any] | None]:
    """ANF's premise: each arm's approximate-nullspace size and ANF's paired differences."""
    report = read_json(runs / NULLSPACE)
    if report is None:
        return (
            f"## ANF's premise: the approximate nullspace's size\n\nNot run: `make anf-nullspace` "
            f"writes {NULLSPACE}.\n",
            None,
        )
    settings, arms = report["settings"], report["arms"]
    norms = [str(n) for n in settings["random_norms"]]
    header = "| arm | largest passing norm | " + " | ".join(
        f"random pass at {float(n):g}" for n in norms
    )
    lines = [header + " |", "|---" * (2 + len(norms)) + "|"]
    for arm, entry in arms.items():
        summary = entry["summary"]
        cells = [interval_text(*summary["largest_passing_norm"])]
        cells += [interval_text(*summary[f"random_pass_fraction@{float(n):g}"]) for n in norms]
        name = f"{arm} (fixed weights)" if entry["fixed_weights"] else arm
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    differences: dict[str, Any] = {}
    diff_lines = []
    for baseline in ("pretrained", "erm", "anf_random"):
        if "anf" not in arms or baseline not in arms:
            continue
        for key in ("largest_passing_norm", *norms):
            values = paired_by_seed(arms, "anf", baseline, key)
            if values is None:
                continue
            mean, half = mean_interval(values)
            excludes = math.isfinite(half) and abs(mean) > half
            label = key if key == "largest_passing_norm" else f"random pass at {float(key):g}"
            differences[f"anf - {baseline}: {label}"] = {
                "mean": mean,
                "half_width": None if not math.isfinite(half) else half,
                "seeds": len(values),
                "excludes_0": excludes,
            }
            reading = ("larger" if mean > 0 else "smaller") if excludes else "no difference shown"
            diff_lines.append(
                f"| anf - {baseline} | {label} | {interval_text(mean, half, 3)} | {len(values)} "
                f"| {reading} |"
            )
    text = (
        "## ANF's premise: the approximate nullspace's size\n\n"
        "`make anf-nullspace`: on the first "
        f"{settings['num_images']} test images, the largest noise norm (token units) that passes "
        f"ANF's eps test (eps {settings['eps']}) along ANF's own noise synthesised with a fixed "
        f"budget ({settings['max_steps']} steps) and seed, and the share of "
        f"{settings['directions']} seeded random token directions of each norm that pass. Mean ± "
        "95% t-interval over the sweep's seeds; a fixed arm's spread is the measurement seeds' "
        "alone.\n\n" + "\n".join(lines) + "\n\nANF minus each other arm, paired by seed (the same "
        "measurement seed on both sides):\n\n| comparison | quantity | difference | seeds | "
        "reading |\n|---|---|---|---|---|\n" + "\n".join(diff_lines) + "\n"
    )
    return text, {"arms": {a: e["summary"] for a, e in arms.items()}, "differences": differences}
