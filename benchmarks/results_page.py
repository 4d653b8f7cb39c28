"""Write docs/results.md, the headline table of the CPU reproduction, from the runs' records.

`make bench` runs this after its sweeps (runs/anf: ERM vs ANF vs the random-noise control;
runs/safer: continued PGD-AT vs SAFER and two ablations). Every number comes from the result
records: each method's mean and 95% t-interval over seeds, and its seed-paired difference from
the comparison's baseline, beside what the paper claims.

    PYTHONPATH=$PWD python benchmarks/results_page.py --runs runs --out docs/results.md
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from robust_vit.aggregate import (
    Groups,
    delta_table,
    group_by_seed,
    group_summary,
    group_table,
    mean_interval,
    mean_result,
    seed_of,
)
from robust_vit.plots import SECTION_PLOTS, group_means, series_over_steps
from robust_vit.records import RECORD_NAME, read_record, write_text_atomic
from robust_vit.report import flatten_metrics

EPS1, EPS4 = "0.00392157", "0.0156863"


@dataclass(frozen=True)
class Comparison:
    """Methods of one sweep compared with its baseline on the given metrics."""

    title: str
    sweep: str
    baseline: str
    keys: dict[str, str]  # metric key -> short label
    claims: dict[str, str]  # short label -> the paper's claim for (method - baseline)
    command: str


COMPARISONS = [
    Comparison(
        "ANF (Liu et al.) against ERM finetuning, same steps", "anf", "erm",
        {"test/acc": "clean", f"test/adversarial/worst_case@{EPS1}": "worst case 1/255",
         f"test/adversarial/worst_case@{EPS4}": "worst case 4/255",
         "test/corruptions/mean_acc": "corruptions (15x5)"},
        {"clean": "+3.3 (ViT-S, ImageNet)", "worst case 1/255": "FGSM +12.2 (ViT-S, ImageNet)",
         "worst case 4/255": "FGSM +12.2 (ViT-S, ImageNet)",
         "corruptions (15x5)": "mCE -15.2 (ViT-S, ImageNet-C)"},
        "make sweep-anf",
    ),
    Comparison(
        "SAFER (Gopal et al.) against continued PGD-AT, from the same PGD-AT stage 1", "safer",
        "pgd_at",
        {"test/acc": "clean", f"test/adversarial/pgd20_linf@{EPS4}": "PGD-20 4/255",
         f"test/adversarial/apgd-ce_linf@{EPS4}": "APGD-CE 4/255",
         f"test/adversarial/worst_case@{EPS4}": "worst case 4/255"},
        {"clean": "about +5", "PGD-20 4/255": "about +5 (PGD-20, 8/255 CIFAR)",
         "APGD-CE 4/255": "about +5 (AutoAttack)", "worst case 4/255": "about +5"},
        "make sweep-safer",
    ),
]


def read_records(folder: Path) -> dict[str, dict]:
    """The result records under ``folder``, keyed by their run folder."""
    return {str(p.parent): read_record(p) for p in sorted(folder.rglob(RECORD_NAME))}


def load_groups(records: dict[str, dict]) -> tuple[Groups, float]:
    """``group -> seed -> metrics`` of the records, and their summed run time."""
    seconds = sum(r.get(stage, {}).get("seconds", 0.0) for r in records.values()
                  for stage in ("fit", "test"))
    return group_by_seed({k: flatten_metrics(r) for k, r in records.items()}), seconds


def method_plots(records: dict[str, dict], out: Path, sweep: str) -> list[str]:
    """Per method, mean over seeds: accuracy vs epsilon and the corruption heatmap (as links)."""
    by_method: dict[str, list[dict]] = {}
    for folder, record in records.items():
        found = seed_of(Path(folder))
        if found is not None:
            by_method.setdefault(Path(found[0]).name, []).append(record)
    links = []
    for method, runs in sorted(by_method.items()):
        for section, plot in SECTION_PLOTS.items():
            results = [r[section]["test"] for r in runs if (r.get(section) or {}).get("test")]
            if len(results) == len(runs):
                path = out / "results" / f"{sweep}_{method}_{section}.png"
                plot(mean_result(results), path,
                     f"{method}: {section}, mean of {len(results)} seeds")
                links.append(f"![{method} {section}]({path.relative_to(out)})")
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


def training_plots(runs: Path, out: Path) -> list[str]:
    """ANF's noise norm per round (mean over seeds) and SAFER's layer scores at each scoring."""
    lines = []
    anf = {m: logged_series([runs / "anf" / m], "train/noise_norm") for m in ("anf", "anf_random")}
    if any(anf.values()):
        path = series_over_steps(anf, out / "results" / "anf_noise_norm.png",
                                 "ANF noise L2 norm over training (mean over seeds)", "noise norm")
        lines.append(f"![ANF noise norm]({path.relative_to(out)})")
    safer = runs / "safer" / "safer"
    if safer.is_dir():
        header = next(safer.rglob("metrics.csv")).read_text().splitlines()[0].split(",")
        layers = [k for k in header if k.startswith("sharpness/")]
        scores = {k.removeprefix("sharpness/"): logged_series([safer], k) for k in layers}
        path = series_over_steps(scores, out / "results" / "safer_layer_scores.png",
                                 "SAFER layer sharpness at each scoring (mean over seeds)",
                                 "one-step SAM loss increase")
        lines.append(f"![SAFER layer scores]({path.relative_to(out)})")
    return lines


def robust_overfitting_plots(runs: Path, out: Path) -> list[str]:
    """Train against validation robust accuracy per epoch, for each run group with a curve.

    The mean over seeds of the records' ``robust_validation`` curves: the picture of robust
    overfitting (training robust accuracy rising while validation's peaks and falls).
    """
    curves: dict[str, dict[str, dict[int, list[float]]]] = {}
    for folder, record in read_records(runs).items():
        section = record.get("robust_validation") or {}
        found = seed_of(Path(folder))
        group = found[0] if found else folder
        for point in section.get("curve", []):
            for split in ("train", "val"):
                if split in point:
                    by_epoch = curves.setdefault(group, {}).setdefault(split, {})
                    by_epoch.setdefault(point["epoch"], []).append(point[split]["robust"]["acc"])
    links = []
    for group, by_split in sorted(curves.items()):
        series = {f"{split} robust": [(e, statistics.fmean(v)) for e, v in sorted(pts.items())]
                  for split, pts in by_split.items()}
        name = Path(group).relative_to(runs).as_posix().replace("/", "_")
        path = series_over_steps(series, out / "results" / f"robust_overfitting_{name}.png",
                                 f"{name}: robust accuracy, train vs validation (mean over seeds)",
                                 "robust accuracy", xlabel="epoch")
        links.append(f"![robust overfitting {name}]({path.relative_to(out)})")
    return links


def paired_delta(groups: Groups, method: str, baseline: str, key: str) -> tuple[float, float, int]:
    """Mean and 95% half-width of ``method - baseline`` over shared seeds, and the pair count."""
    by_name = {Path(g).name: s for g, s in groups.items()}
    seeds = sorted(set(by_name[method]) & set(by_name[baseline]))
    diffs = [by_name[method][s][key] - by_name[baseline][s][key] for s in seeds
             if key in by_name[method][s] and key in by_name[baseline][s]]
    if not diffs:
        return math.nan, math.nan, 0
    return (*mean_interval(diffs), len(diffs))


def verdict(mean: float, half: float) -> str:
    """What the interval says about the sign of the difference."""
    if not math.isfinite(half):
        return "too few seeds"
    if mean - half > 0:
        return "better (interval above 0)"
    if mean + half < 0:
        return "worse (interval below 0)"
    return "no difference shown"


def headline(comparison: Comparison, groups: Groups) -> list[str]:
    """Rows of the headline table for every method of ``comparison`` but its baseline."""
    rows = []
    methods = sorted(Path(g).name for g in groups if Path(g).name != comparison.baseline)
    for method in methods:
        for key, label in comparison.keys.items():
            mean, half, pairs = paired_delta(groups, method, comparison.baseline, key)
            claim = comparison.claims.get(label, "-") if method == comparison.sweep else "-"
            rows.append(f"| {method} - {comparison.baseline} | {label} | {100 * mean:+.2f} ± "
                        f"{100 * half:.2f} | {pairs} | {verdict(mean, half)} | {claim} |")
    return rows


def main() -> None:
    """Build the page from whatever sweeps have records."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ns = parser.parse_args()
    head = ["| comparison | metric | ours: difference, points (95% CI) | seeds | reading | "
            "paper's claim (points) |", "|---|---|---|---|---|---|"]
    sections, total = [], 0.0
    for comparison in COMPARISONS:
        folder = ns.runs / comparison.sweep
        records = read_records(folder) if folder.is_dir() else {}
        groups, seconds = load_groups(records)
        names = {Path(g).name for g in groups}
        if comparison.baseline not in names or len(names) < 2:
            sections.append(f"## {comparison.title}\n\nNot run: `{comparison.command}` writes "
                            f"{folder}/.\n")
            continue
        total += seconds
        head += headline(comparison, groups)
        keys = list(comparison.keys)
        plot = group_means(group_summary(groups, keys),
                           ns.out.parent / "results" / f"{comparison.sweep}_groups.png",
                           f"{comparison.sweep}: mean and 95% interval across seeds")
        sections.append(
            f"## {comparison.title}\n\n`{comparison.command}`; runs and evaluation took "
            f"{seconds / 60:.0f} min of run time on this machine. Accuracy, mean ± 95% "
            f"t-interval over seeds:\n\n{group_table(groups, keys)}\n\nEach method minus "
            f"{comparison.baseline}, paired by seed:\n\n"
            f"{delta_table(groups, comparison.baseline, keys)}\n\n"
            f"![{comparison.sweep}]({plot.relative_to(ns.out.parent)})\n\n"
            "Per method, mean over seeds: accuracy against epsilon per attack, and accuracy per "
            "corruption and severity.\n\n"
            + "\n".join(method_plots(records, ns.out.parent, comparison.sweep)) + "\n")
    page = [
        "# Results: the CPU reproduction on Fashion-MNIST\n",
        f"Generated by `make bench` (`benchmarks/results_page.py`) on {date.today().isoformat()} "
        f"from the records under `{ns.runs}/`; the runs took {total / 60:.0f} min in all, "
        "excluding pretraining and stage 1. Setting: the CPU default ViT (patch 8, width 48, "
        "depth 4) on 32 px Fashion-MNIST, pretrained from scratch, evaluated on 1000 test images "
        "(FGSM, PGD-20, APGD-CE at L-inf 1/255 and 4/255, per-example worst case) and 500 "
        "images x 15 corruptions x 5 severities. The papers' numbers come from ImageNet / "
        "CIFAR-scale ViTs at other radii: beside ours they say what direction and size of effect "
        "was claimed, not a number to match. Analyses: docs/anf.md, docs/safer.md.\n",
        "## Headline\n",
        "\n".join(head) + "\n",
        *sections,
        "## Training curves\n",
        "\n\n".join([*training_plots(ns.runs, ns.out.parent),
                     *robust_overfitting_plots(ns.runs, ns.out.parent)]) + "\n",
    ]
    write_text_atomic(ns.out, "\n".join(page))
    print("\n".join(page))


if __name__ == "__main__":
    main()
