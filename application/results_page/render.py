"""docs/results.md and docs/results.json from the sweeps' records: sections, plots, the page."""

from __future__ import annotations

import math
import statistics
from datetime import date
from pathlib import Path
from typing import Any

from application.aggregate import (
    Groups,
    delta_table,
    group_table,
    mean_result,
    seed_of,
)
from application.results_page.arms import sweep_arms
from application.results_page.claims import Sweep, load_claims
from application.results_page.diagnostics import (
    anf_reach,
    arm_costs,
    cost_table,
    diagnostics_lines,
    safer_selections,
    stage1_curve,
    tested_steps,
)
from application.results_page.headline import (
    BAND,
    CLEAN,
    CORRUPTIONS,
    SEED_MEANS,
    attack_key,
    headline_radius,
    headline_rows,
    headline_table,
    radii_of,
    read_family,
)
from application.results_page.premises import nullspace_section, rollback_section
from application.results_page.runs import arm_groups, logged_series, read_records, run_seconds
from robust_vit.paired import Method
from robust_vit.plots import (
    SECTION_PLOTS,
    Estimate,
    forest,
    layer_heatmap,
    robust_curve,
    series_over_steps,
)


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
    header = csvs[0].read_text().splitlines()[0].split(",") if csvs else []
    layers = [k for k in header if k.startswith("sharpness/")]
    if layers:
        scores = {k.removeprefix("sharpness/"): logged_series([safer], k) for k in layers}
        path = layer_heatmap(
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
    curves: dict[str, dict[str, dict[float, list[float]]]] = {}
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


INFERENCE_TEXT = (
    "Each row pairs the two arms' per-example test outcomes by example and by seed (the code "
    "`robust-vit compare` runs): with one run per arm, "
    f"{Method.MCNEMAR.value}; with several seeds, {Method.BOOTSTRAP.value}, so the 95% interval "
    "carries the test set's sampling error as well as the seeds'. Clean rows use the adversarial "
    "evaluation's clean outcomes on its n examples. Where one side is a single fixed model (a "
    "test-only arm: the same weights for every seed) the seeds column says so: that side carries "
    "no training variance. p is two-sided; Holm p is Holm's step-down correction over the "
    "per-example rows of one study (its family-wise error rate 5%): the CPU reproduction's "
    "sweeps anf and safer together, and the real ViT's sweep on its own. A row reads better or "
    "worse only when its interval excludes 0 and its Holm p is "
    "below 0.05; an interval that excludes 0 but fails Holm reads 'alone, not after Holm'. "
    "Rows whose records hold no per-example files (written before them), and the corruption "
    f"mean, say so and keep the {SEED_MEANS}: they are "
    "never read as better or worse.\n"
)


def forest_plot(sweep: Sweep, rows: list[dict[str, Any]], docs: Path) -> Path:
    """The forest plot of the sweep's headline differences with their 95% intervals."""
    estimates = [
        Estimate(
            f"{row['method']} - {row['baseline']}: {row['metric']}",
            row["difference"],
            row["ci95"][0],
            row["ci95"][1],
            per_example=row["note"] is None,
        )
        for row in rows
        if row["sweep"] == sweep.name and row["ci95"] is not None
    ]
    return forest(
        estimates,
        docs / "results" / f"{sweep.name}_differences.png",
        f"{sweep.name}: headline differences, paired per example and seed (hollow: over seed "
        "means only)",
    )


def sweep_section(
    sweep: Sweep,
    records: dict[str, dict],
    groups: Groups,
    docs: Path,
    radii: list[float],
    rows: list[dict[str, Any]],
) -> str:
    """All arms of a sweep at every radius: means, differences from the reference, plots."""
    keys = [CLEAN, *(attack_key(a, eps) for eps in radii for a in sweep.attacks)]
    keys += [CORRUPTIONS] if sweep.corruptions else []
    plot = forest_plot(sweep, rows, docs)
    return (
        f"## {sweep.name}: every arm\n\n`{sweep.command}`: {sweep.setting}. The runs' fit and test "
        f"times sum to {run_seconds(records) / 60:.0f} min. Accuracy, mean ± 95% "
        f"t-interval over seeds:\n\n{group_table(groups, keys)}\n\nEach arm minus "
        f"{sweep.reference}, paired by seed:\n\n{delta_table(groups, sweep.reference, keys)}\n\n"
        f"The headline's differences with their 95% intervals:\n\n"
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


def wall_seconds(path: Path) -> int | None:
    """A bench's recorded wall time in seconds, or None where it was not run."""
    return int(path.read_text()) if path.is_file() else None


def build(runs: Path, docs: Path) -> tuple[str, dict[str, Any]]:
    """The page and its machine-readable twin, from whatever sweeps of ``claims.yaml`` ran."""
    rows, radii_used, sections, seconds = [], {}, [], 0.0
    costs: dict[str, Any] = {}
    cost_lines: list[str] = []
    diagnostics: dict[str, Any] = {
        "anf_reach": {},
        "safer_stage1": stage1_curve(runs),
        "safer_selections": {},
        "tested_steps": {},
    }
    claims = load_claims()
    for sweep in claims.sweeps.values():
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
        arms = sweep_arms(runs / sweep.name, records)
        for comparison in claims.comparisons:
            if comparison.sweep == sweep.name:
                rows += headline_rows(comparison, groups, arms, sweep, radius)
        diagnostics["anf_reach"][sweep.name] = anf_reach(records)
        diagnostics["safer_selections"].update(safer_selections(records))
        diagnostics["tested_steps"][sweep.name] = tested_steps(records)
        costs[sweep.name] = arm_costs(records)
        cost_lines.append(
            f"**{sweep.name}** (mean over seeds):\n\n"
            + cost_table(costs[sweep.name], groups, sweep, radius)
            + "\n"
        )
        sections.append(sweep_section(sweep, records, groups, docs, radii, rows))
    rows = read_family(rows, {name: sweep.family for name, sweep in claims.sweeps.items()})
    rollback_text, rollback = rollback_section(runs, docs)
    nullspace_text, nullspace = nullspace_section(runs)
    bench, bench_real = (
        wall_seconds(runs / "bench_seconds"),
        wall_seconds(runs / "bench_real_seconds"),
    )
    wall = (
        f"`make bench` took {bench / 60:.0f} min of wall time from a fresh clone "
        "(pretraining and stage 1 included)"
        if bench is not None
        else "no `make bench` wall time was recorded (runs/bench_seconds)"
    )
    if bench_real is not None:
        wall += (
            f", and `make bench-real` (the real sweep) {bench_real / 60:.0f} min (the weights' "
            "conversion and stage 0 included)"
        )
    radius_notes = [
        f"{name}: {r['label']}, where {r['reference']} keeps {100 * r['reference_pgd20_acc']:.1f}% "
        f"PGD-20 accuracy ({'inside' if r['in_band'] else 'outside'} the "
        f"{100 * BAND[0]:.0f}-{100 * BAND[1]:.0f}% band)"
        for name, r in radii_used.items()
        if r
    ]
    flat_reach = {
        f"{sweep}/{arm}": reach
        for sweep, arms in diagnostics["anf_reach"].items()
        for arm, reach in arms.items()
    }
    flat_steps = {
        f"{sweep}/{arm}": by_seed
        for sweep, arms in diagnostics["tested_steps"].items()
        for arm, by_seed in arms.items()
    }
    page = "\n".join(
        [
            "# Results: the CPU reproduction on Fashion-MNIST\n",
            "Generated by `make bench` and `make bench-real` (`python -m "
            f"application.results_page`) on {date.today().isoformat()} from the records under "
            f"`{runs}/`; {wall}; the sweeps' fit and test times sum to "
            f"{seconds / 60:.0f} min (runs go two at a time). The same numbers are in "
            "`docs/results.json`. The papers' numbers come "
            "from ImageNet / CIFAR-scale ViTs at other radii: beside ours they say what direction "
            "and size of effect was claimed, and against what, not a number to match. Analyses: "
            "docs/anf.md, docs/safer.md, docs/regimes.md.\n",
            "## Headline\n",
            INFERENCE_TEXT,
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
            "\n".join(
                diagnostics_lines(
                    {**diagnostics, "anf_reach": flat_reach, "tested_steps": flat_steps}
                )
            )
            + "\n",
            *sections,
            rollback_text,
            nullspace_text,
            "## Training curves\n",
            "\n\n".join([*training_plots(runs, docs), *robust_overfitting_plots(runs, docs)])
            + "\n",
        ]
    )
    result = {
        "generated": date.today().isoformat(),
        "bench_seconds": bench,
        "bench_real_seconds": bench_real,
        "headline_band": list(BAND),
        "headline_radius": radii_used,
        "headline": rows,
        "diagnostics": diagnostics,
        "costs": costs,
        "premises": {"safer_rollback": rollback, "anf_nullspace": nullspace},
        "fit_and_test_seconds": round(seconds, 1),
    }
    return page, json_safe(result)
