"""SAFER's premise tested directly: do the sharpest layers carry the robust overfitting?

From the overfit stage-1 weights (``--last``), each candidate layer in turn is put back to the
early-stopped weights (``--best``) and the stage-1 robust validation is measured again
(callbacks.RobustValidation of experiments/regime/safer_stage1.yaml: PGD-10 at L-inf 8/255, step
2/255, on the first 500 validation images, per-example seeds). The rise is the layer's rollback
gain. SAFER's sharpness scores are taken on the same last weights as SAFER's stage 2 takes them
(experiments/method/safer.yaml with regime/safer_selection.yaml and safer_stage2_attack.yaml:
one-step, absolute radius 0.05, four batches of 50 training images, PGD-5 at 8/255). Printed per
layer: both scores and their ranks; then Spearman's rho with its permutation p-value and the
overlap of the top-k sets (k as SAFER selects). Written: ``<out>/rollback.json``,
``<out>/rollback.png`` and ``<out>/gains.json`` (layer name to gain: the scores SAFER's oracle
arm selects by, experiments/method/safer_oracle.yaml). The defaults are the regime's (a test
checks them against its YAML)::

    PYTHONPATH=$PWD python benchmarks/safer_rollback.py \
        --last artifacts/safer_stage1_last.safetensors \
        --best artifacts/safer_stage1_best.safetensors
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import torch
from scipy.stats import rankdata
from torch import nn
from torch.utils.data import Dataset

from benchmarks.command import run_command
from datamodules.fashion_mnist import FashionMNISTDataModule
from robust_vit.attacks import PGD, WORST, run_suite
from robust_vit.attacks.pgd import pgd
from robust_vit.errors import ConfigError
from robust_vit.layers import candidate_layers
from robust_vit.models import NormalizedViT, create_vit, read_weights_header
from robust_vit.plots import rollback_vs_sharpness
from robust_vit.rank_agreement import agreement
from robust_vit.rollback import rollback_gains
from robust_vit.sharpness import fixed_batches, layer_sharpness, num_selected

ARCHITECTURE = ("model_name", "num_classes", "img_size", "in_chans", "patch_size", "model_kwargs")


def radius(text: str) -> float:
    """A radius as a number or a fraction (``8/255``)."""
    return float(Fraction(text))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's options; the defaults are the stage-1 regime's."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--last", type=Path, required=True, help="the overfit stage-1 weights")
    p.add_argument("--best", type=Path, required=True, help="the early-stopped stage-1 weights")
    p.add_argument("--out", type=Path, default=Path("runs/safer_rollback"))
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's)")
    p.add_argument("--limit-train", type=int, default=1000)
    p.add_argument("--val-fraction", type=float, default=0.5)
    p.add_argument("--num-examples", type=int, default=500, help="validation images attacked")
    p.add_argument("--eps", type=radius, default=radius("8/255"), help="validation attack radius")
    p.add_argument("--steps", type=int, default=10, help="validation PGD steps")
    p.add_argument("--rel-step", type=float, default=0.25, help="validation PGD step / eps")
    p.add_argument("--seed", type=int, default=0, help="validation per-example seeds")
    p.add_argument("--batch-size", type=int, default=256, help="validation images per batch")
    p.add_argument("--fraction", type=float, default=0.1, help="SAFER's selected share (k)")
    p.add_argument("--score-rho", type=float, default=0.05)
    p.add_argument("--score-batches", type=int, default=4)
    p.add_argument("--score-batch-size", type=int, default=50)
    p.add_argument("--score-seed", type=int, default=0)
    p.add_argument("--train-eps", type=radius, default=radius("8/255"), help="scoring PGD radius")
    p.add_argument("--train-alpha", type=radius, default=radius("2/255"), help="its step")
    p.add_argument("--train-steps", type=int, default=5, help="its steps")
    p.add_argument("--permutations", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def load(path: Path, field: str) -> tuple[NormalizedViT, dict[str, Any]]:
    """The normalised ViT a weights file exported by ExportWeights describes, and its metadata."""
    if not path.is_file():
        raise ConfigError(field, f"{str(path)!r} does not exist; `make {path}` builds it.")
    meta = read_weights_header(path)["metadata"]
    missing = [key for key in (*ARCHITECTURE, "mean", "std") if key not in meta]
    if missing:
        raise ConfigError(
            field,
            f"{str(path)!r} lacks {missing} in its metadata: give a file written by "
            "callbacks.ExportWeights.",
        )
    vit = create_vit(
        meta["model_name"],
        num_classes=meta["num_classes"],
        img_size=meta["img_size"],
        in_chans=meta["in_chans"],
        patch_size=meta["patch_size"],
        weights=path,
        model_kwargs=meta["model_kwargs"],
    )
    return NormalizedViT(vit, meta["mean"], meta["std"]).eval(), meta


def robust_accuracy(
    model: nn.Module, dataset: Dataset, attack: PGD, seed: int, batch: int
) -> float:
    """Share of ``dataset`` correct clean and under ``attack`` (RobustValidation's seeds)."""
    n = len(dataset)  # type: ignore[arg-type]
    robust = 0
    for start in range(0, n, batch):
        index = torch.arange(start, min(n, start + batch))
        x = torch.stack([dataset[int(i)][0] for i in index])
        y = torch.as_tensor([int(dataset[int(i)][1]) for i in index])
        flags = run_suite(model, x, y, [attack], index + seed * 2**31)
        robust += int(flags[WORST].sum())
    return robust / n


def finite_or_none(value: float) -> float | None:
    """``value``, or None (JSON null) when it is nan."""
    return None if math.isnan(value) else value


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 for the highest score (average ranks for ties)."""
    values = rankdata([-v for v in scores.values()])
    return dict(zip(scores, values.tolist(), strict=True))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Score, roll back, compare; write the JSON and the plot; return the JSON's content."""
    if args.threads:
        torch.set_num_threads(args.threads)
    last, meta = load(args.last, "--last")
    best, best_meta = load(args.best, "--best")
    differs = [key for key in ARCHITECTURE if meta[key] != best_meta[key]]
    if differs:
        raise ConfigError("--best", f"is another architecture than --last ({differs} differ).")
    data = FashionMNISTDataModule(
        data_dir=args.data_dir,
        augment=False,
        limit_train=args.limit_train,
        val_fraction=args.val_fraction,
        batch_size=args.score_batch_size,
        img_size=meta["img_size"],
        in_chans=meta["in_chans"],
    )
    data.setup("fit")
    if data.val_set is None or data.train_set is None:
        raise ConfigError("--val-fraction", "must be in (0, 0.5]: the validation set is needed.")
    n = min(args.num_examples, len(data.val_set))
    val = torch.utils.data.Subset(data.val_set, range(n))
    attack = PGD(eps=args.eps, steps=args.steps, rel_step=args.rel_step)
    evaluate = partial(
        robust_accuracy, dataset=val, attack=attack, seed=args.seed, batch=args.batch_size
    )
    layers = candidate_layers(last)
    k = num_selected(len(layers), fraction=args.fraction, field="--fraction")
    score_attack = partial(pgd, eps=args.train_eps, alpha=args.train_alpha, steps=args.train_steps)
    batches = fixed_batches(
        data.train_set, args.score_batches, args.score_batch_size, args.score_seed
    )
    sharpness = layer_sharpness(last, layers, batches, rho=args.score_rho, attack=score_attack)
    result = rollback_gains(last, best.state_dict(), layers, evaluate)
    gains = result.gains()
    stats = agreement(sharpness, gains, k, permutations=args.permutations, seed=0)
    sharp_rank, gain_rank = ranks(sharpness), ranks(gains)
    report = {
        "last": str(args.last),
        "best": str(args.best),
        "validation": {"examples": n, "attack": attack.name, "eps": args.eps, "seed": args.seed},
        "robust_acc": {"last": result.base, "best": evaluate(best)},
        "layers": [
            {
                "layer": name,
                "sharpness": sharpness[name],
                "rollback_gain": gains[name],
                "sharpness_rank": sharp_rank[name],
                "gain_rank": gain_rank[name],
            }
            for name in sharpness
        ],
        "spearman": {  # null when a scoring is constant (rho undefined)
            "rho": finite_or_none(stats.rho),
            "permutation_p": finite_or_none(stats.p_value),
            "permutations": stats.permutations,
        },
        "top_k": {
            "k": k,
            "sharpest": stats.top_a,
            "largest_gain": stats.top_b,
            "overlap": stats.overlap,
            "chance_overlap": stats.chance_overlap,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rollback.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gains.json").write_text(json.dumps(gains, indent=2) + "\n")
    rollback_vs_sharpness(
        sharpness,
        gains,
        (stats.top_a, stats.top_b),
        args.out / "rollback.png",
        f"Layer rollback vs sharpness: rho {stats.rho:.2f} (p {stats.p_value:.3g}), "
        f"top-{k} overlap {stats.overlap}",
    )
    return report


def print_report(report: dict[str, Any]) -> None:
    """The per-layer table and the summary lines."""
    acc = report["robust_acc"]
    print(f"robust accuracy: last {acc['last']:.4f}, best {acc['best']:.4f}")
    print(f"{'layer':<24} {'sharpness':>10} {'rank':>5} {'gain':>8} {'rank':>5}")
    for row in report["layers"]:
        print(
            f"{row['layer']:<24} {row['sharpness']:>10.4g} {row['sharpness_rank']:>5g} "
            f"{row['rollback_gain']:>8.4f} {row['gain_rank']:>5g}"
        )
    rho, top = report["spearman"], report["top_k"]
    if rho["rho"] is None:
        print("Spearman rho undefined: one scoring is the same for every layer")
    else:
        print(f"Spearman rho {rho['rho']:.3f}, permutation p {rho['permutation_p']:.4g}")
    print(
        f"top-{top['k']} overlap {top['overlap']} (chance {top['chance_overlap']:.2f}): "
        f"sharpest {top['sharpest']}, largest gain {top['largest_gain']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; a bad input prints its field and fix and returns 2."""
    args = parse_args(argv)
    return run_command(
        "safer_rollback",
        args,
        run,
        print_report,
        f"rollback.json, rollback.png and gains.json in {args.out}",
    )


if __name__ == "__main__":
    sys.exit(main())
