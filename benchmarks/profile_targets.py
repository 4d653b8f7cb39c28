"""Where the time of the performance targets goes, measured with torch's and Lightning's profilers.

Not a test; `make perf` runs it after the benchmarks whose ratios it explains. All on the CPU
default ViT, batch 128, fp32 eager:

1. SAFER step: CPU time per region of a step (the PGD attack, the forward/backward passes, the
   clean forward) and the matrix products run, for PGD-AT, SAFER, and SAFER computing every
   layer's weight gradient (as it did before it asked autograd for the selected layers only).
2. ANF round: one round as the spec runs it (a synthesis with the budget of 30% of an epoch's
   batches, then 40 training steps on clean + noisy) against 40 ERM steps, per region.
3. Framework: Lightning's SimpleProfiler over a `robust-vit fit` ERM epoch: the actions that
   take at least 0.5% of the epoch.

    PYTHONPATH=$PWD python benchmarks/profile_targets.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from application.cli import main as cli_main
from benchmarks import safer_step
from benchmarks.anf_epoch import SPEC_BUDGET
from benchmarks.epoch_rate import fit_args
from benchmarks.framework_overhead import MODEL
from datamodules import FashionMNISTDataModule
from lightning_modules import ViTClassifier
from robust_vit.anf import SynthesisResult, noise_shape, noisy_forward, synthesize_noise

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
ROUND_STEPS = 40


@dataclass(frozen=True)
class Profiled:
    """What torch.profiler saw of one call: ms per named region, matrix products, GFLOP."""

    ms: dict[str, float]
    matmuls: int
    gflop: float


def profiled(fn: Callable[[], object], names: tuple[str, ...] = (), repeats: int = 1) -> Profiled:
    """Profile ``repeats`` calls of ``fn`` (the whole call is the region ``total``), per call."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(repeats):
            with record_function("total"):
                fn()
    events = {e.key: e for e in prof.key_averages()}
    ms = {n: events[n].cpu_time_total / 1e3 / repeats for n in ("total", *names) if n in events}
    matmuls = sum(events[n].count for n in MATMULS if n in events) // repeats
    return Profiled(ms, matmuls, sum(e.flops for e in events.values()) / 1e9 / repeats)


def profile_safer_step(batch_size: int, repeats: int) -> None:
    """Print the regions, matrix products and FLOPs of PGD-AT, SAFER and every-gradient SAFER."""
    args = safer_step.arguments().parse_args(["--batch_size", str(batch_size), "--device", "cpu"])
    names = ("attack", "forward + backward", "SAM forward + backward")
    print(
        f"1. SAFER step, per step (torch.profiler, {repeats} steps each, batch {batch_size}, "
        f"PGD-{args.steps}; profiled ms include the profiler's own overhead)"
    )
    print(
        f"{'variant':<18}{'ms':>8}"
        + "".join(f"{n + ' ms':>26}" for n in names)
        + f"{'matmuls':>9}{'GFLOP':>8}{'vs PGD-AT':>11}"
    )
    reference = None
    for variant in ("pgd_at", "safer", "safer_every_grad"):
        model, x, y = safer_step.build(args)
        model.train()
        step = partial(safer_step.make_step(variant, model, args)[0], x, y)
        step()  # warm-up
        seen = profiled(step, names, repeats)
        reference = reference or seen.gflop
        cells = "".join(f"{seen.ms[n]:>26.1f}" if n in seen.ms else f"{'-':>26}" for n in names)
        print(
            f"{variant:<18}{seen.ms['total']:>8.1f}{cells}{seen.matmuls:>9}{seen.gflop:>8.2f}"
            f"{seen.gflop / reference:>10.3f}x"
        )


def profile_anf_round(weights: Path | None, budget: int) -> None:
    """Print one ANF round (synthesis, then 40 steps) against 40 ERM steps."""
    torch.manual_seed(0)
    model = ViTClassifier(**MODEL, weights=str(weights) if weights else None).model
    data = FashionMNISTDataModule(batch_size=128, augment=False)
    data.setup("fit")
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = itertools.cycle(
        list(itertools.islice(data.train_dataloader(), budget + ROUND_STEPS + 1))
    )
    images = (x for x, _ in batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.05)
    shape = noise_shape(model, next(batches)[0], "token")

    def train(noise: torch.Tensor | None) -> None:
        for x, y in itertools.islice(batches, ROUND_STEPS):
            loss = F.cross_entropy(model(x), y)
            if noise is not None:
                loss = loss + F.cross_entropy(noisy_forward(model, x, noise), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def synthesize() -> SynthesisResult:
        return synthesize_noise(
            model, images, shape, max_steps=budget, generator=torch.Generator().manual_seed(0)
        )

    model.train()
    train(None)  # warm-up
    result = synthesize()
    parts = {
        "ANF synthesis": (profiled(synthesize), max(result.steps, 1)),
        f"ANF training ({ROUND_STEPS} steps)": (
            profiled(partial(train, result.noise)),
            ROUND_STEPS,
        ),
        f"ERM training ({ROUND_STEPS} steps)": (profiled(partial(train, None)), ROUND_STEPS),
    }
    erm, _ = parts[f"ERM training ({ROUND_STEPS} steps)"]
    print(
        f"\n2. ANF round (torch.profiler; weights: {weights or 'random init'}; budget {budget} "
        f"synthesis steps; used {result.steps}, eps reached: {result.reached})"
    )
    print(f"{'region':<26}{'ms':>9}{'steps':>7}{'ms/step':>9}{'GFLOP/step':>12}{'x ERM step':>12}")
    for name, (seen, steps) in parts.items():
        print(
            f"{name:<26}{seen.ms['total']:>9.0f}{steps:>7}{seen.ms['total'] / steps:>9.1f}"
            f"{seen.gflop / steps:>12.2f}{seen.gflop / erm.gflop * ROUND_STEPS / steps:>11.2f}x"
        )
    anf = [seen for seen, _ in list(parts.values())[:2]]
    print(
        "round (synthesis + ANF training) / ERM training: "
        f"{sum(a.gflop for a in anf) / erm.gflop:.2f}x in FLOPs, "
        f"{sum(a.ms['total'] for a in anf) / erm.ms['total']:.2f}x in profiled time"
    )


def profile_framework(batches: int, threads: int) -> None:
    """Print the Lightning actions that take at least 0.5% of a `robust-vit fit` ERM epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        args = fit_args(
            "erm",
            batches,
            threads,
            [
                "--trainer.profiler=lightning.pytorch.profilers.SimpleProfiler",
                f"--trainer.profiler.init_args.dirpath={tmp}",
                "--trainer.profiler.init_args.filename=profile",
            ],
        )
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the run's own messages
                cli_main(args)
        finally:
            os.chdir(cwd)
        report = next(Path(tmp).glob("*profile*.txt")).read_text().splitlines()
    print(
        f"\n3. `robust-vit fit` ERM epoch, {batches} batches of 128 (Lightning SimpleProfiler; "
        "actions of at least 0.5% of the total)"
    )
    totals = {}
    for line in report:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (cells[0] == "Action" or is_share(cells[4], 0.5)):
            print(f"{cells[0][:62]:<64}{cells[3]:>12}{cells[4]:>10}")
            totals[cells[0]] = cells[3]
    epoch = float(totals["run_training_epoch"])
    step = float(totals["[LightningModule]ViTClassifier.optimizer_step"])
    print(
        f"the epoch outside optimizer_step (forward, backward, update): "
        f"{100 * (epoch - step) / epoch:.1f}%"
    )


def is_share(cell: str, at_least: float) -> bool:
    """Whether a SimpleProfiler percentage cell is a number >= ``at_least``."""
    try:
        return float(cell) >= at_least
    except ValueError:
        return False


def main() -> None:
    """Run the three profiles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="SAFER steps profiled per variant")
    parser.add_argument("--batches", type=int, default=100, help="ERM batches under Lightning")
    parser.add_argument(
        "--weights", type=Path, default=Path("artifacts/vit_cpu_fashion_mnist.safetensors")
    )
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    profile_safer_step(128, ns.repeats)
    profile_anf_round(ns.weights if ns.weights.is_file() else None, SPEC_BUDGET)
    profile_framework(ns.batches, ns.threads)


if __name__ == "__main__":
    main()
