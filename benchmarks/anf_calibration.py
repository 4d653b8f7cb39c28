"""ANF's synthesis calibrated on one model: which settings put the noise in the eps-nullspace?

For a weights file with its head (e.g. the real ViT's stage-0 linear probe), on Fashion-MNIST
training images fitted as the model expects (``--upscale``), every combination of ``--init-lims``,
``--lrs`` (in ``--units``: ``token_rms``, the clean patch tokens' RMS, or ``absolute``) and
``--start-criteria`` (ANF's start fit, ``none`` for the start as given) runs ``--rounds``
syntheses of ANF (robust_vit.anf.synthesize_noise: a fresh seeded noise per round, batches of
``--batch-size`` images, at most ``--budget`` updates). Printed per setting: the start's
half-width after the fit and its criterion, the reach
rate (share of rounds whose criterion fell below eps), the median updates to reach it, the noise
norm in token units and absolute, and the share of predictions the noise flipped on its last
tested batch. Also measured side by side: the time of one synthesis update and of one ERM step
(forward, backward and AdamW on a batch), so that the budget's cost can be set against an ERM
epoch. Written: ``<out>/anf_calibration.json``::

    PYTHONPATH=$PWD python benchmarks/anf_calibration.py \
        --weights artifacts/real_vit_probe.safetensors --upscale
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.command import run_command
from benchmarks.safer_rollback import load
from datamodules.fashion_mnist import FashionMNISTDataModule
from robust_vit.anf import noise_shape, synthesize_noise, token_rms
from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="an exported file with its head")
    p.add_argument("--upscale", action="store_true", help="resize the 28 px images to img_size")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's)")
    p.add_argument("--units", choices=["token_rms", "absolute"], default="token_rms")
    p.add_argument("--init-lims", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    p.add_argument("--lrs", nargs="+", type=float, default=[0.03, 0.1])
    p.add_argument(
        "--start-criteria",
        nargs="+",
        type=start_criterion,
        default=[None],
        help="ANF's start_criterion per setting ('none': the start as given)",
    )
    p.add_argument("--budget", type=int, default=200, help="most updates per synthesis")
    p.add_argument("--rounds", type=int, default=5, help="syntheses per setting (seeds 0..)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eps", type=float, default=0.03)
    p.add_argument("--timing-repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("runs/anf_calibration"))
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def start_criterion(text: str) -> float | None:
    """A ``--start-criteria`` entry: a positive number, or ``none``."""
    if text.lower() == "none":
        return None
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number or none")
    return value


def training_images(args: argparse.Namespace, meta: dict[str, Any]) -> torch.Tensor:
    """Enough training images for every update of one synthesis, fitted to the model."""
    data = FashionMNISTDataModule(
        data_dir=args.data_dir,
        augment=False,
        img_size=meta["img_size"],
        in_chans=meta["in_chans"],
        upscale=args.upscale,
        limit_train=(args.budget + 1) * args.batch_size,
    )
    train = data.build_train_set(augment=False)
    return torch.stack([train[i][0] for i in range(len(train))])  # type: ignore[arg-type]


def batches(images: torch.Tensor, size: int, offset: int) -> Iterator[torch.Tensor]:
    """Batches of ``images`` starting at ``offset`` batches in, wrapping around, endless."""
    count = len(images) // size
    for k in itertools.count(offset):
        start = (k % count) * size
        yield images[start : start + size]


def seconds(fn: Any, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_times(model: NormalizedViT, x: torch.Tensor, args: argparse.Namespace) -> dict:
    """One synthesis update and one ERM step on the same batch, timed side by side."""
    y = model(x).argmax(-1).detach()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: the weights stay put

    def erm_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def synthesis() -> None:  # 8 updates and their 9 tests (two forwards, one backward each)
        synthesize_noise(
            model, itertools.repeat(x), noise_shape(model, x, "token"), max_steps=8, eps=0
        )

    erm = seconds(erm_step, args.timing_repeats)
    model.zero_grad(set_to_none=True)
    synthesis_update = seconds(synthesis, args.timing_repeats) / 8
    return {"erm_step": erm, "synthesis_update": synthesis_update, "ratio": synthesis_update / erm}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting's rounds; write and return the summary."""
    if args.threads:
        torch.set_num_threads(args.threads)
    for field in ("budget", "rounds", "batch_size"):
        if getattr(args, field) < 1:
            raise ConfigError(f"--{field.replace('_', '-')}", "must be at least 1.")
    model, meta = load(args.weights, "--weights")
    if not meta.get("num_classes"):
        raise ConfigError("--weights", "has no classifier head: give a probed or trained file.")
    images = training_images(args, meta)
    first = images[: args.batch_size]
    rms = token_rms(model, first)
    scale = rms if args.units == "token_rms" else 1.0
    shape = noise_shape(model, first, "token")
    settings = []
    grid = itertools.product(args.init_lims, args.lrs, args.start_criteria)
    for init_lim, lr, fit in grid:
        rounds = []
        for seed in range(args.rounds):
            began = time.perf_counter()
            result = synthesize_noise(
                model,
                batches(images, args.batch_size, offset=seed * 7),
                shape,
                eps=args.eps,
                init_lim=init_lim,
                lr=lr,
                max_steps=args.budget,
                generator=torch.Generator().manual_seed(seed),
                scale=scale,
                start_criterion=fit,
            )
            rounds.append(
                {
                    "start_lim": result.init_lim,
                    "initial_criterion": result.initial_criterion,
                    "reached": result.reached,
                    "steps": result.steps,
                    "criterion": result.criterion,
                    "flipped": 1 - result.agreement,
                    "norm": result.norm,
                    "norm_token_units": result.norm / rms,
                    "seconds": time.perf_counter() - began,
                }
            )
        reached = [r for r in rounds if r["reached"]]
        settings.append(
            {
                "init_lim": init_lim,
                "lr": lr,
                "start_criterion": fit,
                "mean_start_lim": statistics.fmean(r["start_lim"] for r in rounds),
                "mean_initial_criterion": statistics.fmean(r["initial_criterion"] for r in rounds),
                "reach_rate": len(reached) / len(rounds),
                "median_steps_to_reach": statistics.median(r["steps"] for r in reached)
                if reached
                else None,
                "mean_norm_token_units": statistics.fmean(r["norm_token_units"] for r in rounds),
                "mean_norm": statistics.fmean(r["norm"] for r in rounds),
                "mean_flipped": statistics.fmean(r["flipped"] for r in rounds),
                "mean_last_criterion": statistics.fmean(r["criterion"] for r in rounds),
                "rounds": rounds,
            }
        )
    report = {
        "weights": str(args.weights),
        "model": {k: meta[k] for k in ("model_name", "img_size", "in_chans", "num_classes")},
        "units": args.units,
        "token_rms": rms,
        "noise_shape": list(shape),
        "eps": args.eps,
        "budget": args.budget,
        "batch_size": args.batch_size,
        "times": step_times(model, first, args),
        "settings": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "anf_calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_report(report: dict[str, Any]) -> None:
    """One line per setting, then the step times."""
    print(
        f"{report['model']['model_name']} at {report['model']['img_size']} px: token RMS "
        f"{report['token_rms']:.4f}, eps {report['eps']}, budget {report['budget']} updates, "
        f"units {report['units']}"
    )
    print(
        f"{'init':>6} {'lr':>6} {'fit':>5} {'start':>6} {'crit0':>6} {'reach':>6} {'steps':>6} "
        f"{'norm(tok)':>10} {'flipped':>8}"
    )
    for s in report["settings"]:
        steps = "-" if s["median_steps_to_reach"] is None else f"{s['median_steps_to_reach']:g}"
        fit = "-" if s["start_criterion"] is None else f"{s['start_criterion']:g}"
        print(
            f"{s['init_lim']:>6g} {s['lr']:>6g} {fit:>5} {s['mean_start_lim']:>6.3g} "
            f"{s['mean_initial_criterion']:>6.3f} {s['reach_rate']:>6.0%} {steps:>6} "
            f"{s['mean_norm_token_units']:>10.2f} {s['mean_flipped']:>8.1%}"
        )
    t = report["times"]
    print(
        f"one synthesis update {t['synthesis_update'] * 1e3:.0f} ms, one ERM step "
        f"{t['erm_step'] * 1e3:.0f} ms (ratio {t['ratio']:.2f}), batch {report['batch_size']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the pilot; a bad input prints its field and fix and returns 2."""
    args = parse_args(argv)
    return run_command(
        "anf_calibration", args, run, print_report, str(args.out / "anf_calibration.json")
    )


if __name__ == "__main__":
    sys.exit(main())
