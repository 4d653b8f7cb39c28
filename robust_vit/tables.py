"""Markdown tables of robustness results, shared by the callbacks and ``robust-vit report``."""

from __future__ import annotations

from typing import Any

from robust_vit.threat import parse_threat


def cell(entry: dict[str, Any]) -> str:
    """``acc% [lo, hi]`` for an entry with ``acc`` and ``ci``."""
    lo, hi = entry["ci"]
    return f"{100 * entry['acc']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def adversarial_table(result: dict[str, Any]) -> str:
    """Rows: clean, each attack, worst case; columns: threat models (``L-inf 8/255``)."""
    threats = list(result["worst_case"])
    header = f"| accuracy % [95% CI], n={result['n']}, seed={result['seed']} | "
    lines = [
        header + " | ".join(parse_threat(t).label for t in threats) + " |",
        "|---" * (len(threats) + 1) + "|",
    ]
    lines.append("| clean | " + " | ".join(cell(result["clean"]) for _ in threats) + " |")
    rows = {**result["attacks"], "worst case": result["worst_case"]}
    for name, by_threat in rows.items():
        cells = [cell(by_threat[t]) if t in by_threat else "-" for t in threats]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    warnings = result.get("sanity", {}).get("warnings")
    if warnings is not None:
        lines.append("\nGradient-masking checks: " + ("none flagged." if not warnings else ""))
        lines += [f"- WARNING: {w}" for w in warnings]
    return "\n".join(lines)


def corruption_table(result: dict[str, Any]) -> str:
    """Rows: corruptions; columns: severities, mean, and CE when a reference was given."""
    severities = [str(s) for s in result["severities"]]
    has_ce = bool(result.get("ce"))
    head = ["corruption", *[f"s{s}" for s in severities], "mean"] + (["CE"] if has_ce else [])
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, by_sev in result["accuracy"].items():
        accs = [by_sev[s]["acc"] for s in severities]
        row = [name, *[f"{100 * a:.1f}" for a in accs], f"{100 * sum(accs) / len(accs):.1f}"]
        if has_ce:
            row.append(f"{100 * result['ce'][name]:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    clean = result["clean"]["acc"]
    clean_text = f"{100 * clean:.1f}%" if clean is not None and clean == clean else "-"
    summary = (
        f"\nclean {clean_text}, mean corruption accuracy "
        f"{100 * result['mean_accuracy']:.1f}%, n={result['n']}"
    )
    if has_ce:
        summary += (
            f", mCE {100 * result['mce']:.1f}, relative mCE "
            f"{100 * result['relative_mce']:.1f} (reference: {result['reference']})"
        )
    return "\n".join(lines) + summary


def shift_table(result: dict[str, Any]) -> str:
    """Rows: distribution-shift sets, with accuracy, interval, n and the classes scored."""
    lines = ["| set | accuracy % [95% CI] | n | classes |", "|---|---|---|---|"]
    for name, entry in result["sets"].items():
        classes = f"{entry['classes']} (masked)" if entry["masked"] else str(entry["classes"])
        lines.append(f"| {name} | {cell(entry)} | {entry['n']} | {classes} |")
    return "\n".join(lines)
