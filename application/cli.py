"""The ``robust-vit`` command: LightningCLI's subcommands, and light tools that need no Lightning.

``report``, ``compare``, ``prefetch`` and ``sweep`` (but for ``sweep run``, which runs a fit)
import neither Lightning nor the callbacks: they read their arguments at once. ``evaluate``
checks its arguments the same way, then runs LightningCLI's ``test``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Subcommands beside LightningCLI's: each module's main(argv) takes the rest of the line.
TOOLS = {
    "report": "application.report",
    "compare": "application.compare",
    "prefetch": "application.prefetch",
    "sweep": "application.sweep_cli",
    "evaluate": "application.evaluate",
}


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of ``robust-vit`` and ``python -m robust_vit``."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] and argv[0] in TOOLS:
        importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
        return
    from application.lightning_cli import run

    run(None if args is None else argv)
