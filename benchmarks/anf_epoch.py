"""An ANF training epoch, noise synthesis included, against an ERM epoch on the same model and data.

Not a test. Both run through `robust-vit fit` with the Throughput callback (images per second of
the training epoch, validation excluded), interleaved (ERM, ANF, ERM, ANF, ...), best of each.
ANF's synthesis budget is a fraction of a *full* epoch's batches (`budget_fraction` 0.3 of 421
Fashion-MNIST batches of 128 = 127 steps per round); with fewer batches per measured epoch the
budget is set explicitly to that value so that the ratio is the one of a full epoch. A third
run with a budget of 1 step per round isolates the cost of the clean + noisy training steps.

    PYTHONPATH=$PWD python benchmarks/anf_epoch.py --batches 120 --threads 2
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch

from benchmarks.epoch_rate import fit_epoch_rate

FULL_EPOCH_BATCHES = 54000 // 128
SPEC_BUDGET = math.ceil(0.3 * FULL_EPOCH_BATCHES)  # budget_fraction 0.3 of a full epoch


def epoch_rate(
    method: str, batches: int, threads: int, weights: str | None, extra: list[str]
) -> float:
    """Images/s of one training epoch of ``method`` (from ``weights`` when given)."""
    start = [f"--model.weights={Path(weights).resolve()}"] if weights else []
    return fit_epoch_rate(method, batches, threads, [*start, *extra])


def main() -> None:
    """Run both interleaved and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=120, help="a multiple of steps_per_round")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--weights",
        default="artifacts/vit_cpu_fashion_mnist.safetensors",
        help="start from these weights when the file exists (synthesis stops "
        "early more often on a trained model)",
    )
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    weights = ns.weights if Path(ns.weights).is_file() else None

    anf = [f"--model.method.init_args.max_synthesis_steps={SPEC_BUDGET}"]
    one_step = ["--model.method.init_args.max_synthesis_steps=1"]
    erm_rates, anf_rates, train_only = [], [], []
    for _ in range(ns.repeats):
        erm_rates.append(epoch_rate("erm", ns.batches, ns.threads, weights, []))
        anf_rates.append(epoch_rate("anf", ns.batches, ns.threads, weights, anf))
        train_only.append(epoch_rate("anf", ns.batches, ns.threads, weights, one_step))
    print(
        f"{ns.batches} batches of 128, {ns.threads} threads, weights: "
        f"{weights or 'random init'}; ANF: rounds of 40 steps, synthesis budget "
        f"{SPEC_BUDGET} steps per round"
    )
    print(f"ERM epoch: {max(erm_rates):8.1f} img/s  (runs: {[round(v) for v in erm_rates]})")
    print(f"ANF epoch: {max(anf_rates):8.1f} img/s  (runs: {[round(v) for v in anf_rates]})")
    print(
        f"ANF, 1 synthesis step per round: {max(train_only):8.1f} img/s  "
        f"(runs: {[round(v) for v in train_only]})"
    )
    print(
        f"ANF epoch time / ERM epoch time: {max(erm_rates) / max(anf_rates):.2f}x (target <= 2.2x)"
    )
    print(
        f"the same with 1 synthesis step per round (the clean + noisy training alone): "
        f"{max(erm_rates) / max(train_only):.2f}x"
    )


if __name__ == "__main__":
    main()
