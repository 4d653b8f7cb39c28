"""ANF's premise measured: does nullspace finetuning enlarge the approximate nullspace?

For every arm and seed of the ANF sweep (``<runs>/<arm>/seed<s>/``: the newest exported weights
``*.safetensors`` there, not an evaluation's outcome file, else the newest ``last.ckpt``; an arm
tested as fixed weights, such as ``pretrained``, is given with ``--fixed ARM=FILE``), on the
first ``--num-images`` Fashion-MNIST test images, with the measurement seeded by the run's seed
(the same seed for every arm):

- the largest token-noise norm (token units) that passes ANF's eps test along the direction of
  ANF's own noise, synthesised with a fixed budget (robust_vit.nullspace_size.largest_passing_norm);
- the fraction of seeded random token directions of each ``--random-norms`` norm that pass
  (robust_vit.nullspace_size.random_pass_fraction).

Printed per arm: the mean over seeds with its 95% t-interval; a fixed arm's spread comes from the
measurement seeds only (no training variance). Written: ``<out>/nullspace_size.json``::

    PYTHONPATH=$PWD python benchmarks/anf_nullspace_size.py --runs runs/anf \
        --arms pretrained erm anf anf_random \
        --fixed pretrained=artifacts/vit_cpu_fashion_mnist.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from application.aggregate import mean_interval
from benchmarks.command import run_command
from benchmarks.safer_rollback import finite_or_none, load
from datamodules.fashion_mnist import FashionMNISTDataModule
from robust_vit.errors import ConfigError
from robust_vit.models import NormalizedViT, create_vit
from robust_vit.nullspace_size import largest_passing_norm, random_pass_fraction
from robust_vit.outcomes import SUFFIX as OUTCOMES_SUFFIX

VIT_PREFIX = "model."


def fixed_weights(text: str) -> tuple[str, Path]:
    """``ARM=FILE`` as ``(arm, path)``."""
    arm, sep, path = text.partition("=")
    if not sep or not arm or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not ARM=FILE")
    return arm, Path(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's options; the synthesis defaults are ANF's token-unit regime's."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/anf"), help="the sweep's folder")
    p.add_argument("--arms", nargs="+", default=["pretrained", "erm", "anf", "anf_random"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--fixed", type=fixed_weights, action="append", default=[], help="ARM=FILE (repeatable)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/anf_nullspace"))
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's)")
    p.add_argument("--num-images", type=int, default=256, help="the fixed test images")
    p.add_argument("--eps", type=float, default=0.03, help="the eps test's threshold")
    p.add_argument("--init-lim", type=float, default=3.0, help="token units")
    p.add_argument("--lr", type=float, default=0.1, help="the noise's AdamW lr, token units")
    p.add_argument("--max-steps", type=int, default=100, help="the fixed synthesis budget")
    p.add_argument("--batch-size", type=int, default=64, help="synthesis batch size")
    p.add_argument("--random-norms", nargs="+", type=float, default=[8.0, 16.0, 32.0])
    p.add_argument("--directions", type=int, default=64, help="random directions per norm")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def load_checkpoint(path: Path) -> NormalizedViT:
    """The normalised ViT of a Lightning checkpoint of ``ViTClassifier`` (weights only)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    vit = create_vit(
        hp["model_name"],
        num_classes=hp["num_classes"],
        img_size=hp["img_size"],
        in_chans=hp["in_chans"],
        patch_size=hp["patch_size"],
        model_kwargs=hp["model_kwargs"],
    )
    state = {
        k[len(VIT_PREFIX) :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(f"{VIT_PREFIX}vit.") or k in ("model.mean", "model.std")
    }
    model = NormalizedViT(vit, [0.0] * hp["in_chans"], [1.0] * hp["in_chans"])
    model.load_state_dict(state)
    return model.eval()


def run_weights(folder: Path, arm: str) -> Path:
    """The newest exported weights file under a run folder, else its newest ``last.ckpt``.

    An evaluation's outcome files (``*.outcomes.safetensors``) are records, not weights.
    """
    for pattern in ("*.safetensors", "last.ckpt"):
        found = sorted(
            (p for p in folder.rglob(pattern) if not p.name.endswith(OUTCOMES_SUFFIX)),
            key=lambda p: p.stat().st_mtime,
        )
        if found:
            return found[-1]
    raise ConfigError(
        "--runs",
        f"no weights (*.safetensors or last.ckpt) under {str(folder)!r}: run `make sweep-anf` "
        f"first, or give a fixed arm's weights with --fixed {arm}=FILE.",
    )


def load_model(path: Path, field: str) -> NormalizedViT:
    """A weights file exported by ExportWeights, or a checkpoint."""
    return load_checkpoint(path) if path.suffix == ".ckpt" else load(path, field)[0]


def measure(model: NormalizedViT, x: torch.Tensor, seed: int, args: argparse.Namespace) -> dict:
    """Both quantities for one model, the measurement seeded by ``seed``."""
    found = largest_passing_norm(
        model,
        x,
        eps=args.eps,
        init_lim=args.init_lim,
        lr=args.lr,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=seed,
    )
    fractions = {
        str(norm): random_pass_fraction(
            model, x, norm, eps=args.eps, num_directions=args.directions, seed=seed
        )
        for norm in args.random_norms
    }
    return {
        "largest_passing_norm": found.norm,
        "bracket": [found.lower, found.upper],
        "bounded": found.upper is not None,
        "synthesized_norm": found.synthesized,
        "synthesis_reached_eps": found.reached,
        "token_rms": found.rms,
        "random_pass_fraction": fractions,
    }


def summary(seeds: dict[int, dict[str, Any]], norms: list[float]) -> dict[str, list]:
    """``quantity -> [mean, 95% half-width]`` over seeds (half-width null with one seed)."""
    values = {"largest_passing_norm": [m["largest_passing_norm"] for m in seeds.values()]}
    for norm in norms:
        values[f"random_pass_fraction@{norm:g}"] = [
            m["random_pass_fraction"][str(norm)] for m in seeds.values()
        ]
    return {
        key: [mean, finite_or_none(half)]
        for key, (mean, half) in ((k, mean_interval(v)) for k, v in values.items())
    }


def fixed_test_images(args: argparse.Namespace, model: NormalizedViT) -> torch.Tensor:
    """The first ``--num-images`` test images at the model's size and channels."""
    embed = model.vit.patch_embed
    data = FashionMNISTDataModule(
        data_dir=args.data_dir,
        augment=False,
        img_size=int(embed.img_size[0]),
        in_chans=int(embed.proj.in_channels),
    )
    test = data.build_test_set()
    n = min(args.num_images, len(test))  # type: ignore[arg-type]
    return torch.stack([test[i][0] for i in range(n)])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every arm and seed; write the JSON and return its content."""
    if args.threads:
        torch.set_num_threads(args.threads)
    for field in ("num_images", "directions", "max_steps", "batch_size"):
        if getattr(args, field) < 1:
            raise ConfigError(f"--{field.replace('_', '-')}", "must be at least 1.")
    if not 0 < args.eps <= 2:
        raise ConfigError("--eps", "must be in (0, 2] (a squared probability change).")
    if any(norm < 0 for norm in args.random_norms):
        raise ConfigError("--random-norms", "norms are >= 0 (token units).")
    fixed = dict(args.fixed)
    unknown = sorted(set(fixed) - set(args.arms))
    if unknown:
        raise ConfigError("--fixed", f"names arms {unknown} not in --arms {args.arms}.")
    paths = {
        (arm, seed): fixed.get(arm) or run_weights(args.runs / arm / f"seed{seed}", arm)
        for arm in args.arms
        for seed in args.seeds
    }
    for path in set(fixed.values()):
        if not path.is_file():
            raise ConfigError("--fixed", f"{str(path)!r} does not exist.")
    x: torch.Tensor | None = None
    arms: dict[str, Any] = {}
    for arm in args.arms:
        seeds: dict[int, dict[str, Any]] = {}
        for seed in args.seeds:
            path = paths[arm, seed]
            model = load_model(path, "--fixed" if arm in fixed else "--runs")
            x = fixed_test_images(args, model) if x is None else x
            seeds[seed] = {"weights": str(path), **measure(model, x, seed, args)}
        arms[arm] = {
            "fixed_weights": arm in fixed,
            "seeds": seeds,
            "summary": summary(seeds, args.random_norms),
        }
    report = {
        "settings": {
            k: getattr(args, k)
            for k in (
                "num_images",
                "eps",
                "init_lim",
                "lr",
                "max_steps",
                "batch_size",
                "random_norms",
                "directions",
                "seeds",
            )
        },
        "units": "token units: noise L2 norm / clean patch tokens' RMS",
        "arms": arms,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nullspace_size.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def cell(mean: float, half: float | None) -> str:
    """``mean ± half`` (the mean alone without an interval)."""
    return f"{mean:.3f} ± {half:.3f}" if half is not None and math.isfinite(half) else f"{mean:.3f}"


def print_report(report: dict[str, Any]) -> None:
    """One row per arm: mean ± 95% interval over seeds of each quantity."""
    keys = list(next(iter(report["arms"].values()))["summary"])
    print(f"{'arm':<16} " + " ".join(f"{k:>28}" for k in keys))
    for arm, entry in report["arms"].items():
        row = " ".join(f"{cell(*entry['summary'][k]):>28}" for k in keys)
        unbounded = any(not s["bounded"] for s in entry["seeds"].values())
        note = " (fixed weights)" if entry["fixed_weights"] else ""
        note += " (a norm hit the search's cap: a lower bound)" if unbounded else ""
        print(f"{arm:<16} {row}{note}")


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; a bad input prints its field and fix and returns 2."""
    args = parse_args(argv)
    return run_command(
        "anf_nullspace_size", args, run, print_report, str(args.out / "nullspace_size.json")
    )


if __name__ == "__main__":
    sys.exit(main())
