"""Copy the records the results page reads from ``runs/`` to a folder that is committed.

``make records`` (and ``make bench`` / ``make bench-real`` after their runs) copies, keeping the
layout under ``runs/``: each sweep's result records, per-example outcome files and logged
metrics, stage 1's, the layer rollback and the nullspace summaries, and the benches' wall times.
Only what ``runs/`` holds is replaced: a folder or file it lacks (the CPU sweeps after a
``make bench-real`` alone) keeps its committed copy. ``make report`` then rebuilds
docs/results.md from the copy alone::

    python -m application.results_page.collect --runs runs --out docs/records
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

# What the page reads, by folder under runs/ (file name patterns, searched recursively).
RECORD_FILES = ("results.json", "*.outcomes.safetensors", "metrics.csv")
SOURCES = {
    "anf": RECORD_FILES,
    "safer": RECORD_FILES,
    "safer_stage1": RECORD_FILES,
    "safer_rollback": ("rollback.json",),
    "anf_nullspace": ("nullspace_size.json",),
    "real": RECORD_FILES,
    "real_warm": RECORD_FILES,
    "real_nullspace": ("results.json",),
    "evaluate": (*RECORD_FILES, "model_info.json"),  # robust-vit evaluate's runs
}
TOP_LEVEL = ("bench_seconds", "bench_real_seconds")
# An absolute path into a runs/ folder, as records write log dirs and checkpoints.
ABSOLUTE_RUNS = re.compile(r'"/[^"]*?/runs/')


def relative_paths(text: str) -> str:
    """A record's text with the machine's absolute runs/ paths made relative (``runs/...``)."""
    return ABSOLUTE_RUNS.sub('"runs/', text)


def collect(runs: Path, out: Path) -> list[Path]:
    """Replace each of ``out``'s folders and files that ``runs`` holds; return the copied files."""
    if not runs.is_dir():
        raise SystemExit(f"collect: --runs {runs} is not a folder; run the sweeps first.")
    found = [runs / name for name in TOP_LEVEL if (runs / name).is_file()]
    for folder, patterns in SOURCES.items():
        if not (runs / folder).is_dir():
            continue
        if (out / folder).exists():
            shutil.rmtree(out / folder)
        for pattern in patterns:
            found += sorted((runs / folder).rglob(pattern))
    copied = []
    for source in found:
        target = out / source.relative_to(runs)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.name == "results.json":
            target.write_text(relative_paths(source.read_text()))
        else:
            shutil.copy2(source, target)
        copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> None:
    """Copy and say how much."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/records"))
    ns = parser.parse_args(argv)
    copied = collect(ns.runs, ns.out)
    size = sum(path.stat().st_size for path in copied)
    print(f"collect: {len(copied)} files ({size / 2**20:.1f} MiB) in {ns.out}")


if __name__ == "__main__":
    main()
