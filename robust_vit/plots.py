"""Plots from result records (matplotlib, Agg backend).

Accuracy vs epsilon, the corruption heatmap, robust overfitting curves, ANF's synthesis rounds,
the nullspace report, the per-layer sharpness scores (bars, and a layer x scoring heatmap) and
the forest plot of paired differences: every figure the project draws. Titles wrap to the
figure's width, so that none is cut off.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from robust_vit.records import save_figure_atomic
from robust_vit.threat import NORM_LABELS, NormName, canonical_metric_key, parse_threat, radius_text

CHARACTERS_PER_INCH = 10  # of a default-size title, with some margin


def wrap_titles(fig: Figure) -> None:
    """Wrap every axes' title to the figure's width, so that a long title is not cut off."""
    width = max(20, int(fig.get_figwidth() * CHARACTERS_PER_INCH))
    for ax in fig.axes:
        title = ax.get_title()
        if title:
            ax.set_title(textwrap.fill(title, width))


def finish(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Wrap the titles, lay the figure out, write it to ``path`` atomically and free it."""
    wrap_titles(fig)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=dpi)
    plt.close(fig)
    return path


def accuracy_vs_epsilon(result: dict[str, Any], path: Path, title: str) -> Path:
    """One line per attack (and the worst case) per norm: robust accuracy against epsilon."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rows = {**result["attacks"], "worst case": result["worst_case"]}
    radii: set[float] = {0.0}
    for name, by_threat in rows.items():
        points: dict[NormName, list[tuple[float, float]]] = {}
        for key, entry in by_threat.items():
            threat = parse_threat(key)
            points.setdefault(threat.norm, []).append((threat.eps, entry["acc"]))
            radii.add(threat.eps)
        for norm, pts in points.items():
            pts = sorted([(0.0, result["clean"]["acc"]), *pts])
            style = "k--" if name == "worst case" else "-o"
            ax.plot(
                *zip(*pts, strict=True),
                style,
                markersize=3,
                label=f"{name} ({NORM_LABELS[norm]})",
            )
    ticks = sorted(radii)
    ax.set_xticks(ticks, ["0", *(radius_text(eps) for eps in ticks[1:])], fontsize=7)
    ax.set(xlabel="epsilon (images in [0, 1])", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.legend(fontsize=7)
    return finish(fig, path)


def corruption_heatmap(result: dict[str, Any], path: Path, title: str) -> Path:
    """Accuracy per corruption (rows) and severity (columns)."""
    names = list(result["accuracy"])
    severities = [str(s) for s in result["severities"]]
    grid = [[result["accuracy"][c][s]["acc"] for s in severities] for c in names]
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(severities), 1 + 0.3 * len(names)))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(severities)), severities)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="severity", title=title)
    fig.colorbar(image, ax=ax, label="accuracy")
    return finish(fig, path)


SECTION_PLOTS = {"adversarial": accuracy_vs_epsilon, "corruptions": corruption_heatmap}


def group_means(table: dict[str, dict[str, tuple[float, float]]], path: Path, title: str) -> Path:
    """Grouped bars: per metric, each group's mean with its 95% interval as an error bar.

    ``table`` maps group -> metric -> (mean, half-width of the interval).
    """
    groups = list(table)
    metrics = sorted({m for by_metric in table.values() for m in by_metric})
    width = 0.8 / max(1, len(groups))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(metrics)), 3.5))
    for i, group in enumerate(groups):
        means = [table[group].get(m, (float("nan"), 0.0)) for m in metrics]
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(
            xs,
            [m for m, _ in means],
            width,
            yerr=[h for _, h in means],
            capsize=3,
            label=Path(group).name,
        )
    labels = [canonical_metric_key(m.replace("test/", "")) for m in metrics]
    ax.set_xticks(range(len(metrics)), labels, rotation=20, ha="right", fontsize=7)
    ax.set(ylabel="accuracy", title=title)
    ax.legend(fontsize=7)
    return finish(fig, path)


def series_over_steps(
    series: dict[str, list[tuple[float, float]]],
    path: Path,
    title: str,
    ylabel: str,
    xlabel: str = "optimizer step",
) -> Path:
    """One line per name: ``(step, value)`` points, e.g. a logged quantity per group or layer."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for name, points in series.items():
        if points:
            steps, values = zip(*sorted(points), strict=True)
            ax.plot(steps, values, marker=".", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=6, ncol=2)
    return finish(fig, path)


def robust_curve(curve: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """``<split> robust`` -> ``(epoch, robust accuracy)`` of a ``robust_validation`` curve."""
    series: dict[str, list[tuple[float, float]]] = {}
    for point in curve:
        for split in ("train", "val"):
            if split in point:
                series.setdefault(f"{split} robust", []).append(
                    (point["epoch"], point[split]["robust"]["acc"])
                )
    return series


def robust_overfitting(curve: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Training against validation robust accuracy per epoch (a record's curve)."""
    return series_over_steps(robust_curve(curve), path, title, "robust accuracy", xlabel="epoch")


ANF_PANELS = {
    "noise_norm": "noise L2 norm",
    "synth_reached": "reached eps",
    "synth_agreement": "agreement",
}


def anf_rounds(rounds: list[dict[str, float]], path: Path, title: str) -> Path:
    """ANF's synthesis per round (``fit.method.rounds``): noise norm, eps reached, agreement.

    Agreement is the share of the last searched batch whose prediction the noise left unchanged.
    """
    fig, axes = plt.subplots(len(ANF_PANELS), 1, figsize=(5, 4.5), sharex=True)
    x = [r["round"] for r in rounds]
    for ax, (stat, label) in zip(axes, ANF_PANELS.items(), strict=True):
        style = "o" if stat == "synth_reached" else "o-"  # a yes/no per round: no line
        ax.plot(x, [r[stat] for r in rounds], style, markersize=3)
        ax.set_ylabel(label, fontsize=8)
    axes[1].set(ylim=(-0.1, 1.1), yticks=[0, 1], yticklabels=["no", "yes"])
    axes[2].set_ylim(0, 1.05)
    axes[0].set_title(title)
    axes[-1].set_xlabel("round")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish(fig, path)


def plot_nullspace_report(report: dict[str, Any], path: Path) -> Path:
    """Singular values of the patch embedding and prediction agreement per noise, as a PNG."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    s = report["singular_values"]
    left.semilogy(range(1, len(s) + 1), s, marker=".")
    left.set(
        title=f"patch embedding: {report['patch_dim']} -> {report['embed_dim']}, "
        f"nullspace {report['nullspace_dim']}",
        xlabel="index",
        ylabel="singular value",
    )
    names = ["exact nullspace\n(clamped)", "ANF noise", "random noise\n(same norm)"]
    values = [
        report["exact_agreement_clamped"],
        report["anf_noise"]["agreement"],
        report["random_same_norm"]["agreement"],
    ]
    right.bar(names, values, color=["tab:gray", "tab:blue", "tab:orange"])
    right.set(title="unchanged predictions", ylim=(0, 1.05), ylabel="agreement")
    return finish(fig, path)


def plot_layer_scores(
    scores: dict[str, float], selected: list[str], path: Path, title: str = "Layer sharpness"
) -> Path:
    """A bar chart of ``scores`` in layer order, the ``selected`` layers highlighted.

    Args:
        scores: layer name to score.
        selected: layers drawn in a second colour.
        path: the PNG file to write.
        title: the chart's title.
    """
    names = list(scores)
    fig = Figure(figsize=(max(4.0, 0.35 * len(names)), 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = ["tab:red" if n in selected else "tab:blue" for n in names]
    ax.bar(range(len(names)), [scores[n] for n in names], color=colours)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("score")
    ax.set_title(title)
    return finish(fig, path, dpi=100)


@dataclass(frozen=True)
class Estimate:
    """One paired difference for a forest plot.

    Args:
        label: what is compared, e.g. ``safer - pgd_at: PGD-20 8/255``.
        difference: the difference (a fraction, drawn in points).
        low: its 95% interval's lower end.
        high: its upper end.
        per_example: paired per example and seed (False: over seed means only).
    """

    label: str
    difference: float
    low: float
    high: float
    per_example: bool


def forest(estimates: Sequence[Estimate], path: Path, title: str) -> Path:
    """Each paired difference as a point with its 95% interval, around a line at 0.

    Seed-means estimates (no per-example files) are drawn hollow: their intervals leave out
    the test set's sampling error.
    """
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.3 * len(estimates)))
    for y, e in enumerate(reversed(estimates)):
        colour = "tab:blue" if e.per_example else "tab:gray"
        ax.errorbar(
            100 * e.difference,
            y,
            xerr=[[100 * (e.difference - e.low)], [100 * (e.high - e.difference)]],
            fmt="o",
            capsize=3,
            color=colour,
            mfc=colour if e.per_example else "white",
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(estimates)), [e.label for e in reversed(estimates)], fontsize=7)
    ax.set_ylim(-0.7, len(estimates) - 0.3)
    ax.set(xlabel="difference, accuracy points (95% interval)", title=title)
    return finish(fig, path)


def layer_heatmap(
    scores: dict[str, list[tuple[float, float]]], path: Path, title: str, label: str
) -> Path:
    """Layers (rows) by scoring (columns, at their optimizer step): each layer's score.

    ``scores`` maps layer -> ``(step, score)``; a layer not scored at a step is left blank.
    """
    layers = list(scores)
    steps = sorted({step for points in scores.values() for step, _ in points})
    by_layer = {layer: dict(points) for layer, points in scores.items()}
    grid = [[by_layer[layer].get(step, math.nan) for step in steps] for layer in layers]
    fig, ax = plt.subplots(figsize=(4 + 0.3 * len(steps), 1.5 + 0.25 * len(layers)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(steps)), [f"{s:g}" for s in steps], rotation=90, fontsize=6)
    ax.set_yticks(range(len(layers)), layers, fontsize=6)
    ax.set(xlabel="scoring (optimizer step)", title=title)
    fig.colorbar(image, ax=ax, label=label)
    return finish(fig, path)


def rollback_vs_sharpness(
    sharpness: dict[str, float],
    gains: dict[str, float],
    top: tuple[list[str], list[str]],
    path: Path,
    title: str,
) -> Path:
    """Each layer's sharpness score above its rollback gain, each score's top k in red.

    Args:
        sharpness: layer name to sharpness score, in layer order.
        gains: layer name to rollback gain (robust accuracy), for the same layers.
        top: the top-k layers by sharpness and by gain.
        path: the PNG file to write.
        title: the figure's title.
    """
    names = list(sharpness)
    fig = Figure(figsize=(max(5.0, 0.35 * len(names)), 6.0))
    FigureCanvasAgg(fig)
    upper, lower = fig.subplots(2, 1, sharex=True)
    for ax, scores, chosen, label in (
        (upper, sharpness, top[0], "sharpness (loss rise)"),
        (lower, gains, top[1], "rollback gain (robust acc)"),
    ):
        colours = ["tab:red" if n in chosen else "tab:blue" for n in names]
        ax.bar(range(len(names)), [scores[n] for n in names], color=colours)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_ylabel(label)
    lower.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    fig.suptitle(title, wrap=True)
    return finish(fig, path, dpi=100)
