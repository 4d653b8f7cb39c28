"""Images per second of one `robust-vit fit` training epoch, shared by the epoch benchmarks."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from application.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def fit_args(method: str, batches: int, threads: int, extra: list[str]) -> list[str]:
    """`robust-vit fit` arguments: one epoch of ``batches`` batches of ``method``, no validation."""
    layers = ("base", "data/fashion_mnist", "model/vit_cpu", f"method/{method}")
    configs = [a for c in layers for a in ("--config", str(REPO / "experiments" / f"{c}.yaml"))]
    return [
        "fit",
        *configs,
        f"--trainer.limit_train_batches={batches}",
        "--trainer.limit_val_batches=0",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--threads={threads}",
        *extra,
    ]


def fit_epoch_rate(method: str, batches: int, threads: int, extra: list[str]) -> float:
    """Images/s of ``batches`` training batches of ``method`` on the CPU default ViT.

    The run happens in a temporary folder; the rate is the Throughput callback's (validation
    excluded), read from the run's record.
    """
    args = fit_args(method, batches, threads, ["--trainer.callbacks+=callbacks.Throughput", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            cli_main(args)
            (record,) = Path(tmp).rglob("results.json")
            return json.loads(record.read_text())["throughput"]["epochs"][0]["images_per_s"]
        finally:
            os.chdir(cwd)
