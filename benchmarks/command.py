"""The shared tail of the analysis commands: run, print, say what was written, or fail clearly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from robust_vit.errors import ConfigError


def run_command(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    print_report: Callable[[dict[str, Any]], None],
    written: str,
) -> int:
    """Run ``run(args)``, print its report and what it wrote; 2 on a bad input (named)."""
    try:
        report = run(args)
    except ConfigError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    print_report(report)
    print(f"wrote {written}")
    return 0
