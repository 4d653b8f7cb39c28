"""Write docs/results.md and docs/results.json, the CPU reproduction's headline, from the records.

`make bench` runs this after its sweeps:
- runs/anf: the pretrained ViT (tested as is) against ERM, ANF, the random-noise control and
  Gaussian noise finetuning;
- runs/safer: from the overfit stage 1 (runs/safer_stage1), continued PGD-AT against SAFER, its two
  ablations and the early-stopped stage-1 weights.

Each headline row puts the paper's claim, with the comparison the paper made, beside our
comparison: the seed-paired difference with its 95% t-interval, at the radius where the sweep's
reference arm keeps 20-60% robust accuracy. The diagnostics say whether the runs exercised what
each method targets (ANF's reach rate, stage 1's robust overfitting, SAFER's re-selections) and
which step every arm was tested at.

    PYTHONPATH=$PWD python benchmarks/results_page.py --runs runs --out docs/results.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from application.aggregate import (
    Groups,
    delta_table,
    group_by_seed,
    group_summary,
    group_table,
    mean_interval,
    mean_result,
    seed_of,
)
from application.report import flatten_metrics
from benchmarks.results_diagnostics import (
    anf_reach,
    arm_costs,
    overfitting_curve,
    safer_selections,
    tested_steps,
)
from robust_vit.plots import SECTION_PLOTS, group_means, robust_curve, series_over_steps
from robust_vit.records import RECORD_NAME, read_record, write_text_atomic
from robust_vit.threat import parse_threat, radius_text

BAND = (0.2, 0.6)  # the reference arm's robust accuracy at a headline radius
CLEAN, CORRUPTIONS = "test/acc", "test/corruptions/mean_acc"


@dataclass(frozen=True)
class Sweep:
    """One sweep of runs/<name>: its arms' headline metrics and the arm that picks the radius."""

    name: str
    command: str
    setting: str
    reference: str  # the arm whose PGD-20 accuracy places the headline radius in BAND
    attacks: dict[str, str]  # attack name in the records -> label
    corruptions: bool


@dataclass(frozen=True)
class Comparison:
    """``method - baseline`` in one sweep, what it tests, and the paper's claim per metric."""

    sweep: str
    method: str
    baseline: str
    role: str
    claims: dict[str, str]  # metric label -> the paper's claim, with the paper's comparison


SWEEPS = {
    "anf": Sweep(
        "anf",
        "make sweep-anf",
        "from the pretrained CPU ViT (patch 8, width 48, depth 4, 5 epochs of ERM on 54 000 "
        "images), every finetuned arm 800 steps of AdamW 3e-5 (1/100 of pretraining), tested at "
        "its last step; ANF and its random control synthesise in token units (init 3, lr 0.1 "
        "token RMS). 1000 test images for FGSM, PGD-20 and APGD-CE at L-inf 2, 4, 8 and 12/255 "
        "(per-example worst case); 500 images x 15 corruptions x 5 severities",
        "pretrained",
        {"fgsm_linf": "FGSM", "pgd20_linf": "PGD-20"},
        True,
    ),
    "safer": Sweep(
        "safer",
        "make sweep-safer",
        "stage 1: PGD-5 AT at L-inf 8/255 from scratch, a 96x6 ViT on 500 training images "
        "(500 held out for robust validation), 130 epochs, one decay; stage 2 from its last "
        "(overfit) weights, 24 epochs of AdamW 1e-4 with PGD-5 at 8/255 for every arm, tested "
        "at the last step; early stopping is the stage-1 epoch of best validation PGD-10 "
        "accuracy; SAFER-LoRA trains rank-8 LoRA adapters on SAFER's layers; PGD-AT + ANF "
        "noise adds ANF's noisy term (token units, 6 rounds of 40 steps) to PGD-AT's loss. 1000 "
        "test images for FGSM, PGD-20 and APGD-CE at L-inf 4 and 8/255",
        "pgd_at",
        {
            "fgsm_linf": "FGSM",
            "pgd20_linf": "PGD-20",
            "apgd-ce_linf": "APGD-CE",
            "worst_case": "worst case",
        },
        False,
    ),
}

ANF_CLAIMS = {
    "clean": "ViT-S + NS vs ViT-S, ImageNet: +3.3",
    "FGSM": "ViT-S + NS vs ViT-S, ImageNet: FGSM +12.2",
    "corruptions": "ViT-S + NS vs ViT-S: ImageNet-C mCE -15.2 (lower is better)",
}
RANDOM_CLAIMS = {
    "FGSM": "NS vs random noise, ViT-S, eps 0.03: FGSM +2.8",
    "corruptions": "NS vs random noise: ImageNet-C mCE +1.3 (random better)",
}
DAT_NS_CLAIMS = {"FGSM": "ViT-B + DAT + NS vs ViT-B + DAT, ImageNet: FGSM 48.98 vs 48.80 (+0.18)"}
SAFER_CLAIMS = {
    label: "SAFER vs PGD-AT ViTs: clean and adversarial 'typically around +5', up "
    "to +20 (abstract; CIFAR, L-inf 8/255)"
    for label in ("clean", "PGD-20", "APGD-CE", "worst case")
}

COMPARISONS = [
    Comparison("anf", "anf", "pretrained", "the paper's comparison", ANF_CLAIMS),
    Comparison("anf", "anf", "erm", "stricter: finetuning with the same steps, no noise", {}),
    Comparison(
        "anf", "anf", "anf_random", "nullspace control: learned vs random noise", RANDOM_CLAIMS
    ),
    Comparison(
        "safer", "safer", "pgd_at", "the paper's comparison: continued PGD-AT", SAFER_CLAIMS
    ),
    Comparison(
        "safer",
        "safer",
        "early_stopped",
        "robust overfitting's usual remedy (Rice et al. 2020)",
        {},
    ),
    Comparison("safer", "safer", "safer_sam_all", "ablation: SAM on every layer", {}),
    Comparison(
        "safer", "safer", "safer_base_optimizer", "ablation: the selected layers without SAM", {}
    ),
    Comparison(
        "safer",
        "pgd_at_anf",
        "pgd_at",
        "composed: ANF's noise term on top of PGD-AT (the ANF paper's DAT + NS)",
        DAT_NS_CLAIMS,
    ),
    Comparison(
        "safer",
        "safer_lora",
        "safer",
        "LoRA adapters on SAFER's layers instead of the layers' weights",
        {},
    ),
    Comparison("safer", "safer_lora", "pgd_at", "SAFER-LoRA against continued PGD-AT", {}),
]


def read_records(folder: Path) -> dict[str, dict]:
    """The result records under ``folder``, keyed by their run folder."""
    if not folder.is_dir():
        return {}
    return {str(p.parent): read_record(p) for p in sorted(folder.rglob(RECORD_NAME))}


def arm_groups(records: dict[str, dict]) -> Groups:
    """``arm -> seed -> metrics`` of a sweep's records."""
    groups = group_by_seed({k: flatten_metrics(r) for k, r in records.items()})
    return {Path(g).name: by_seed for g, by_seed in groups.items()}


def run_seconds(records: dict[str, dict]) -> float:
    """The summed fit and test time of the records."""
    return sum(
        r.get(stage, {}).get("seconds", 0.0) for r in records.values() for stage in ("fit", "test")
    )


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


def method_plots(records: dict[str, dict], docs: Path, sweep: str) -> list[str]:
    """Per arm, mean over seeds: accuracy vs epsilon and the corruption heatmap (as links)."""
    by_arm: dict[str, list[dict]] = {}
    for folder, record in records.items():
        found = seed_of(Path(folder))
        if found is not None:
            by_arm.setdefault(Path(found[0]).name, []).append(record)
    links = []
    for arm, runs in sorted(by_arm.items()):
        for section, plot in SECTION_PLOTS.items():
            results = [r[section]["test"] for r in runs if (r.get(section) or {}).get("test")]
            if results and len(results) == len(runs):
                path = docs / "results" / f"{sweep}_{arm}_{section}.png"
                plot(mean_result(results), path, f"{arm}: {section}, mean of {len(results)} seeds")
                links.append(f"![{arm} {section}]({path.relative_to(docs)})")
    return links


def logged_series(run_dirs: list[Path], key: str) -> list[tuple[float, float]]:
    """``(step, value)`` of ``key`` in the runs' metrics.csv, averaged over runs at each step."""
    by_step: dict[float, list[float]] = {}
    for run_dir in run_dirs:
        for metrics in run_dir.rglob("metrics.csv"):
            with metrics.open() as f:
                for row in csv.DictReader(f):
                    if row.get(key) and row.get("step"):
                        by_step.setdefault(float(row["step"]), []).append(float(row[key]))
    return [(step, statistics.fmean(values)) for step, values in sorted(by_step.items())]


def training_plots(runs: Path, docs: Path) -> list[str]:
    """ANF's noise norm per round (mean over seeds) and SAFER's layer scores at each scoring."""
    lines = []
    anf = {m: logged_series([runs / "anf" / m], "train/noise_norm") for m in ("anf", "anf_random")}
    if any(anf.values()):
        path = series_over_steps(
            anf,
            docs / "results" / "anf_noise_norm.png",
            "ANF noise L2 norm over training (mean over seeds)",
            "noise norm",
        )
        lines.append(f"![ANF noise norm]({path.relative_to(docs)})")
    safer = runs / "safer" / "safer"
    csvs = sorted(safer.rglob("metrics.csv")) if safer.is_dir() else []
    if csvs:
        header = csvs[0].read_text().splitlines()[0].split(",")
        layers = [k for k in header if k.startswith("sharpness/")]
        scores = {k.removeprefix("sharpness/"): logged_series([safer], k) for k in layers}
        path = series_over_steps(
            scores,
            docs / "results" / "safer_layer_scores.png",
            "SAFER layer sharpness at each scoring (mean over seeds)",
            "one-step SAM loss increase",
        )
        lines.append(f"![SAFER layer scores]({path.relative_to(docs)})")
    return lines


def robust_overfitting_plots(runs: Path, docs: Path) -> list[str]:
    """Train against validation robust accuracy per epoch, for each run group with a curve.

    The mean over seeds of the records' ``robust_validation`` curves: the picture of robust
    overfitting (training robust accuracy rising while validation's peaks and falls).
    """
    curves: dict[str, dict[str, dict[int, list[float]]]] = {}
    for folder, record in read_records(runs).items():
        section = record.get("robust_validation") or {}
        found = seed_of(Path(folder))
        group = found[0] if found else folder
        for line, points in robust_curve(section.get("curve", [])).items():
            for epoch, acc in points:
                curves.setdefault(group, {}).setdefault(line, {}).setdefault(epoch, []).append(acc)
    links = []
    for group, by_line in sorted(curves.items()):
        series = {
            line: [(e, statistics.fmean(v)) for e, v in sorted(pts.items())]
            for line, pts in by_line.items()
        }
        name = Path(group).relative_to(runs).as_posix().replace("/", "_")
        path = series_over_steps(
            series,
            docs / "results" / f"robust_overfitting_{name}.png",
            f"{name}: robust accuracy, train vs validation (mean over seeds)",
            "robust accuracy",
            xlabel="epoch",
        )
        links.append(f"![robust overfitting {name}]({path.relative_to(docs)})")
    return links


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
    heads = [
        label if key == CLEAN else f"{label} {radius_text(radius['eps'])}"  # type: ignore[index]
        for label, key in keys.items()
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


def sweep_section(
    sweep: Sweep, records: dict[str, dict], groups: Groups, docs: Path, radii: list[float]
) -> str:
    """All arms of a sweep at every radius: means, differences from the reference, plots."""
    keys = [CLEAN, *(attack_key(a, eps) for eps in radii for a in sweep.attacks)]
    keys += [CORRUPTIONS] if sweep.corruptions else []
    plot = group_means(
        group_summary(groups, keys),
        docs / "results" / f"{sweep.name}_groups.png",
        f"{sweep.name}: mean and 95% interval across seeds",
    )
    return (
        f"## {sweep.name}: every arm\n\n`{sweep.command}`: {sweep.setting}. The runs' fit and test "
        f"times sum to {run_seconds(records) / 60:.0f} min. Accuracy, mean ± 95% "
        f"t-interval over seeds:\n\n{group_table(groups, keys)}\n\nEach arm minus "
        f"{sweep.reference}, paired by seed:\n\n{delta_table(groups, sweep.reference, keys)}\n\n"
        f"![{sweep.name}]({plot.relative_to(docs)})\n\n"
        "Per arm, mean over seeds: accuracy against epsilon per attack (and the corruption "
        "heatmap where it ran).\n\n" + "\n".join(method_plots(records, docs, sweep.name)) + "\n"
    )


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def build(runs: Path, docs: Path) -> tuple[str, dict[str, Any]]:
    """The page and its machine-readable twin, from whatever sweeps have records."""
    rows, radii_used, sections, seconds = [], {}, [], 0.0
    costs: dict[str, Any] = {}
    cost_lines: list[str] = []
    diagnostics: dict[str, Any] = {
        "anf_reach": {},
        "safer_stage1": stage1_curve(runs),
        "safer_selections": {},
        "tested_steps": {},
    }
    for sweep in SWEEPS.values():
        records = read_records(runs / sweep.name)
        groups = arm_groups(records)
        if sweep.reference not in groups or len(groups) < 2:
            sections.append(
                f"## {sweep.name}\n\nNot run: `{sweep.command}` writes {runs / sweep.name}/.\n"
            )
            continue
        seconds += run_seconds(records)
        radii = radii_of(records)
        radius = headline_radius(sweep, groups, radii)
        radii_used[sweep.name] = radius
        for comparison in COMPARISONS:
            if comparison.sweep == sweep.name:
                rows += headline_rows(comparison, groups, sweep, radius)
        diagnostics["anf_reach"].update(anf_reach(records))
        diagnostics["safer_selections"].update(safer_selections(records))
        diagnostics["tested_steps"][sweep.name] = tested_steps(records)
        costs[sweep.name] = arm_costs(records)
        cost_lines.append(
            f"**{sweep.name}** (mean over seeds):\n\n"
            + cost_table(costs[sweep.name], groups, sweep, radius)
            + "\n"
        )
        sections.append(sweep_section(sweep, records, groups, docs, radii))
    bench_file = runs / "bench_seconds"
    bench = int(bench_file.read_text()) if bench_file.is_file() else None
    wall = (
        f"`make bench` took {bench / 60:.0f} min of wall time from a fresh clone "
        "(pretraining and stage 1 included)"
        if bench is not None
        else "no `make bench` wall time was recorded (runs/bench_seconds)"
    )
    radius_notes = [
        f"{name}: {r['label']}, where {r['reference']} keeps {100 * r['reference_pgd20_acc']:.1f}% "
        f"PGD-20 accuracy ({'inside' if r['in_band'] else 'outside'} the "
        f"{100 * BAND[0]:.0f}-{100 * BAND[1]:.0f}% band)"
        for name, r in radii_used.items()
        if r
    ]
    flat_steps = {
        f"{sweep}/{arm}": by_seed
        for sweep, arms in diagnostics["tested_steps"].items()
        for arm, by_seed in arms.items()
    }
    page = "\n".join(
        [
            "# Results: the CPU reproduction on Fashion-MNIST\n",
            "Generated by `make bench` (`benchmarks/results_page.py`) on "
            f"{date.today().isoformat()} from the records under `{runs}/`; {wall}; the sweeps' "
            "fit and test times sum to "
            f"{seconds / 60:.0f} min (runs go two at a time). The same numbers are in "
            "`docs/results.json`. The papers' numbers come "
            "from ImageNet / CIFAR-scale ViTs at other radii: beside ours they say what direction "
            "and size of effect was claimed, and against what, not a number to match. Analyses: "
            "docs/anf.md, docs/safer.md, docs/regimes.md.\n",
            "## Headline\n",
            headline_table(rows) + "\n",
            "Headline radius per sweep, the one where the reference arm's PGD-20 accuracy is "
            "nearest the middle of the 20-60% band: "
            + ("; ".join(radius_notes) or "none")
            + ". Every "
            "radius is in the sweeps' tables below.\n",
            "## Cost beside accuracy\n",
            "Parameters the optimizer trained at the end of fit, and the fit's wall time per "
            "optimizer step (attacks, SAFER's scorings, ANF's syntheses and validation included; "
            "two runs at a time, so compare arms within a sweep). The per-step costs measured "
            "side by side in one process are in docs/performance.md (`make perf`).\n",
            *cost_lines,
            "## Diagnostics: did the runs exercise what the methods target?\n",
            "\n".join(diagnostics_lines({**diagnostics, "tested_steps": flat_steps})) + "\n",
            *sections,
            "## Training curves\n",
            "\n\n".join([*training_plots(runs, docs), *robust_overfitting_plots(runs, docs)])
            + "\n",
        ]
    )
    result = {
        "generated": date.today().isoformat(),
        "bench_seconds": bench,
        "headline_band": list(BAND),
        "headline_radius": radii_used,
        "headline": rows,
        "diagnostics": diagnostics,
        "costs": costs,
        "fit_and_test_seconds": round(seconds, 1),
    }
    return page, json_safe(result)


def main() -> None:
    """Write the page and the JSON next to it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ns = parser.parse_args()
    page, result = build(ns.runs, ns.out.parent)
    write_text_atomic(ns.out, page)
    write_text_atomic(ns.out.with_suffix(".json"), json.dumps(result, indent=1) + "\n")
    print(page)


if __name__ == "__main__":
    main()
