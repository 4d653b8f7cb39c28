"""Light commands: ``robust-vit sweep show anf`` against a bare ``import jsonargparse``.

The light subcommands (``sweep``, ``report``, ``prefetch``) read their arguments before anything
heavy is imported, so they should cost little more than the Python start-up and jsonargparse
they need. Each command is a fresh process; the commands are interleaved (bare, sweep, lightning,
bare, ...) because the machine is shared and noisy, and the median of each is compared. The
Lightning import is printed beside them: what every command paid before the split.

    python benchmarks/light_commands.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c 'import jsonargparse'": [sys.executable, "-c", "import jsonargparse"],
    "robust-vit sweep show anf": [sys.executable, "-m", "robust_vit", "sweep", "show", "anf"],
    "python -c 'import lightning'": [sys.executable, "-c", "import lightning"],
}
TARGET = 1.5  # sweep show / bare jsonargparse import


def wall_time(argv: list[str]) -> float:
    """Seconds one process takes from start to exit."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    """Time the commands interleaved and print their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="unused: no torch work here")
    ns = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file-system cache
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(ns.repeats):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    for name, median in medians.items():
        print(f"{name:34s} {median:6.2f} s  (median of {ns.repeats})")
    bare, sweep = (medians[name] for name in list(COMMANDS)[:2])
    print(f"ratio sweep show / import jsonargparse: {sweep / bare:.2f}  (target <= {TARGET})")


if __name__ == "__main__":
    main()
