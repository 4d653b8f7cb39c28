"""The checks behind the results page: did each run exercise what its method targets?

From the result records under ``runs/``: ANF's reach rate (the share of synthesis rounds whose
noise entered the eps-approximate nullspace), SAFER stage 1's robust-overfitting curve (peak,
last, fall, train/validation gap), SAFER's selections, and the step each arm was tested at.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from application.aggregate import Groups, seed_of
from application.results_page.claims import Sweep
from application.results_page.headline import CLEAN, CORRUPTIONS, metric_keys
from application.results_page.runs import read_records
from robust_vit.threat import radius_text


def arm_of(folder: str) -> tuple[str, int] | None:
    """``(arm, seed)`` of a sweep run folder ``runs/<sweep>/<arm>/seed<s>/...``."""
    found = seed_of(Path(folder))
    return (Path(found[0]).name, found[1]) if found else None


def noise_summary(method: dict[str, Any]) -> dict[str, Any] | None:
    """The ANF summary of a record's method: its own, or that of a composite's ANF term."""
    if method.get("reach_rate") is not None:
        return method
    terms = [t for t in method.get("terms", []) if t.get("reach_rate") is not None]
    return terms[0] if terms else None


def anf_reach(records: dict[str, dict]) -> dict[str, Any]:
    """Per noise arm: each seed's reach rate, rounds and mean noise L2, and the pooled rate.

    An arm whose method composes ANF's noise with another loss counts its ANF term's rounds.
    """
    out: dict[str, Any] = {}
    for folder, record in sorted(records.items()):
        found = arm_of(folder)
        summary = noise_summary((record.get("fit") or {}).get("method") or {})
        if found is None or summary is None:
            continue
        rounds = summary["rounds"]
        arm = out.setdefault(found[0], {"noise_units": summary.get("noise_units"), "seeds": {}})
        arm["seeds"][found[1]] = {
            "reach_rate": summary["reach_rate"],
            "rounds": len(rounds),
            "mean_noise_l2": statistics.fmean(r["noise_norm"] for r in rounds),
            "mean_synth_steps": statistics.fmean(r["synth_steps"] for r in rounds),
            "mean_token_rms": statistics.fmean(r["token_rms"] for r in rounds),
        }
    for arm in out.values():
        seeds = arm["seeds"].values()
        reached = sum(s["reach_rate"] * s["rounds"] for s in seeds)
        arm["rounds"] = sum(s["rounds"] for s in seeds)
        arm["reach_rate"] = reached / arm["rounds"]
    return out


def overfitting_curve(record: dict) -> dict[str, Any] | None:
    """Peak, last, fall and train/validation gap of a record's robust-validation curve."""
    curve = (record.get("robust_validation") or {}).get("curve") or []
    points = [p for p in curve if "val" in p]
    if not points:
        return None
    val = [p["val"]["robust"]["acc"] for p in points]
    peak = max(range(len(val)), key=val.__getitem__)
    last = points[-1]
    train = last.get("train", {}).get("robust", {}).get("acc")
    return {
        "attack": record["robust_validation"].get("attack"),
        "epochs": len(points),
        "peak_epoch": points[peak]["epoch"],
        "peak_val_robust": val[peak],
        "last_epoch": last["epoch"],
        "last_val_robust": val[-1],
        "fall": val[peak] - val[-1],
        "last_train_robust": train,
        "gap": None if train is None else train - val[-1],
        "max_gap": max(
            (
                p["train"]["robust"]["acc"] - p["val"]["robust"]["acc"]
                for p in points
                if "train" in p
            ),
            default=None,
        ),
    }


def safer_selections(records: dict[str, dict]) -> dict[str, Any]:
    """Per SAFER arm and seed: candidates, selections (epoch, count, layers) and re-selections."""
    out: dict[str, Any] = {}
    for folder, record in sorted(records.items()):
        found = arm_of(folder)
        summary = (record.get("fit") or {}).get("method") or {}
        if found is None or "selections" not in summary:
            continue
        out.setdefault(found[0], {})[found[1]] = {
            "num_candidates": summary["num_candidates"],
            "reselections": summary["reselections"],
            "selections": [
                {
                    "epoch": s["epoch"],
                    "global_step": s["global_step"],
                    "selected": s["selected"],
                    "changed": s["changed"],
                }
                for s in summary["selections"]
            ],
        }
    return out


def tested_steps(records: dict[str, dict]) -> dict[str, dict[int, Any]]:
    """Per arm and seed: the global step of the tested weights (or the weights file tested)."""
    out: dict[str, dict[int, Any]] = {}
    for folder, record in sorted(records.items()):
        found = arm_of(folder)
        test = record.get("test")
        if found is None or not test:
            continue
        tested: Any = (test.get("weights") or {}).get("global_step")
        if tested is None:
            config = (record.get("run") or {}).get("config") or {}
            tested = f"weights file {config.get('model', {}).get('weights')}"
        out.setdefault(found[0], {})[found[1]] = tested
    return out


def arm_costs(records: dict[str, dict]) -> dict[str, Any]:
    """Per trained arm: parameters the optimizer held at the end and fit seconds per step.

    The seconds are the fit's wall time (attacks, SAFER's scorings, ANF's syntheses and
    validation included) over its optimizer steps, averaged over seeds; runs went two at a time,
    so they compare arms of one sweep, not machines.
    """
    by_arm: dict[str, list[dict]] = {}
    for folder, record in sorted(records.items()):
        found = arm_of(folder)
        fit = record.get("fit") or {}
        if found is not None and fit.get("global_step"):
            by_arm.setdefault(found[0], []).append(fit)
    return {
        arm: {
            "trainable_params": (
                round(statistics.fmean(f["trainable_params"] for f in fits))
                if all("trainable_params" in f for f in fits)
                else None
            ),
            "seconds_per_step": statistics.fmean(f["seconds"] / f["global_step"] for f in fits),
            "seeds": len(fits),
        }
        for arm, fits in by_arm.items()
    }


def stage1_curve(runs: Path) -> dict[str, Any] | None:
    """The overfitting summary of the newest stage-1 record (runs/safer_stage1)."""
    records = read_records(runs / "safer_stage1")
    curves = [c for c in map(overfitting_curve, records.values()) if c is not None]
    return curves[-1] if curves else None


def diagnostics_lines(diagnostics: dict[str, Any]) -> list[str]:
    """The diagnostics in words, one bullet each."""
    lines = []
    for arm, reach in diagnostics["anf_reach"].items():
        seeds = reach["seeds"].values()
        lines.append(
            f"- **{arm}** ({reach['noise_units']} units): the noise entered the eps-approximate "
            f"nullspace in {100 * reach['reach_rate']:.0f}% of {reach['rounds']} rounds, mean "
            f"noise L2 {statistics.fmean(s['mean_noise_l2'] for s in seeds):.1f} after "
            f"{statistics.fmean(s['mean_synth_steps'] for s in seeds):.0f} synthesis steps "
            f"(token RMS {statistics.fmean(s['mean_token_rms'] for s in seeds):.3f})."
        )
    curve = diagnostics["safer_stage1"]
    if curve:
        lines.append(
            f"- **SAFER stage 1** ({curve['attack']} on held-out images, {curve['epochs']} "
            f"epochs): validation robust accuracy peaked at {curve['peak_val_robust']:.3f} "
            f"(epoch {curve['peak_epoch']}) and ended at {curve['last_val_robust']:.3f} (epoch "
            f"{curve['last_epoch']}), a fall of {100 * curve['fall']:.1f} points; training robust "
            f"accuracy ended at {curve['last_train_robust']:.3f}, a train/validation gap of "
            f"{100 * curve['gap']:.1f} points."
        )
    for arm, by_seed in diagnostics["safer_selections"].items():
        first = next(iter(by_seed.values()))
        sizes = sorted({len(s["selected"]) for r in by_seed.values() for s in r["selections"]})
        layers = sorted(
            {name for r in by_seed.values() for s in r["selections"] for name in s["selected"]}
        )
        lines.append(
            f"- **{arm}**: {'/'.join(map(str, sizes))} of {first['num_candidates']} candidate "
            f"layers selected, re-selections per seed "
            f"{[r['reselections'] for r in by_seed.values()]}; layers ever selected: "
            f"{', '.join(f'`{n}`' for n in layers)}."
        )
    steps = diagnostics["tested_steps"]
    if steps:
        lines.append(
            "- **Tested weights** (global step, per seed): "
            + "; ".join(
                f"{arm} {sorted(set(map(str, by_seed.values())))}" for arm, by_seed in steps.items()
            )
            + "."
        )
    return lines


def cost_table(
    costs: dict[str, Any], groups: Groups, sweep: Sweep, radius: dict[str, Any] | None
) -> str:
    """Per trained arm: trainable parameters and fit time per step beside its accuracies."""
    keys = metric_keys(sweep, radius["eps"] if radius else None)
    at_radius = f" {radius_text(radius['eps'])}" if radius else ""  # the attacks' radius
    heads = [
        label + ("" if key in (CLEAN, CORRUPTIONS) else at_radius) for label, key in keys.items()
    ]
    lines = [
        "| arm | trainable parameters | fit s / step | " + " | ".join(heads) + " |",
        "|---" * (3 + len(heads)) + "|",
    ]
    for arm, cost in sorted(costs.items()):
        means = [
            statistics.fmean(m[key] for m in groups[arm].values() if key in m)
            if any(key in m for m in groups[arm].values())
            else math.nan
            for key in keys.values()
        ]
        params = "-" if cost["trainable_params"] is None else f"{cost['trainable_params']:,}"
        lines.append(
            f"| {arm} | {params} | {cost['seconds_per_step']:.2f} | "
            + " | ".join(f"{v:.4f}" for v in means)
            + " |"
        )
    return "\n".join(lines)
