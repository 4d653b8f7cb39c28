"""Our PGD-20 robust-accuracy evaluation against torchattacks.PGD, measured side by side.

Trains the small test ViT on the committed Fashion-MNIST slice (seconds), then attacks the same
test examples with both implementations (L-inf 8/255, step 2/255, 20 steps, one random start)
and prints both robust accuracies and the time ratio. Run from the repository root:

    PYTHONPATH=$PWD python benchmarks/pgd_vs_torchattacks.py
"""

from __future__ import annotations

import argparse
import time

import torch
import torchattacks

from robust_vit.attacks import PGD, eval_mode
from tests.trained import train_small_model


def robust_accuracy(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy on the returned examples."""
    with eval_mode(model), torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def main() -> None:
    """Train, attack with both, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trained = train_small_model()
    x, y = trained.x[: args.examples], trained.y[: args.examples]
    eps, alpha, steps = 8 / 255, 2 / 255, 20
    clean = robust_accuracy(trained.model, x, y)
    ours_attack = PGD(eps=eps, steps=steps, rel_step=alpha / eps)
    theirs_attack = torchattacks.PGD(trained.model, eps=eps, alpha=alpha, steps=steps,
                                     random_start=True)
    timings: dict[str, list[float]] = {"ours": [], "torchattacks": []}
    accs: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so that machine load hits both alike
        start = time.perf_counter()
        result = ours_attack(trained.model, x, y, torch.arange(len(x)))
        accs["ours"] = result.robust.float().mean().item()
        timings["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        accs["torchattacks"] = robust_accuracy(trained.model, theirs_attack(x, y), y)
        timings["torchattacks"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in timings.items()}
    print(f"n={len(x)}  clean accuracy {clean:.3f}  PGD-20 L-inf eps=8/255 step=2/255")
    print(f"{'':14s}{'robust acc':>12s}{f'seconds (best of {args.repeats})':>24s}")
    for name in ("ours", "torchattacks"):
        print(f"{name:14s}{accs[name]:12.3f}{best[name]:24.2f}")
    print(f"speed-up (torchattacks time / ours): {best['torchattacks'] / best['ours']:.2f}x")


if __name__ == "__main__":
    main()
