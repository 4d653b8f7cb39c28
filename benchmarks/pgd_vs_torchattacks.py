"""Our PGD-20 evaluation against torchattacks.PGD on the pretrained CPU ViT, with the floor.

Not a test. Both attack the first ``--examples`` Fashion-MNIST test images, in batches of
``--batch_size`` (the evaluation callback's default), under L-inf at 2/255, 4/255 and 8/255
with step eps/4, 20 steps and one random start. Ours is ``robust_vit.attacks.PGD`` as the
evaluation calls it (per-example seeds, early exit, its own re-scoring of the returned examples);
theirs is ``torchattacks.PGD`` plus one forward to score what it returns. Runs are interleaved
batch by batch (ours, theirs, the next batch; then the floor's timings; ``--repeats`` times),
and each time is the sum over batches of each batch's best run.

The floor is what any exact PGD has to compute on these examples, and nothing else:
- one clean forward per example, and
- one forward+backward (to the input) per step an example takes before it is misclassified:
  20 for an example that stays robust through all 20 steps, ``j`` for one first misclassified at
  the iterate after ``j`` steps (0 at the random start), 0 for one misclassified clean.

That is (2k+1) forward-equivalents per still-robust example when a backward costs a forward.
The steps are counted in an extra, untimed run of ours: its loss counts the rows still
classified correctly in every forward that takes a gradient, and its flags must equal the timed
runs'. They are priced with the time of one forward (F) and one forward+backward (FB) per
example, each timed as 20 passes over a full batch in every repeat of that radius (best of
its repeats, so each radius is priced in its own stretch of machine load). The
floor leaves out the forward that scores a last iterate, the re-scoring, every elementwise
update and the higher per-example cost of the smaller batches that early exit leaves.

    PYTHONPATH=$PWD python benchmarks/pgd_vs_torchattacks.py --examples 1000 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torchattacks
from torch import Tensor, nn

from benchmarks.framework_overhead import MODEL
from datamodules import FashionMNISTDataModule
from lightning_modules import ViTClassifier
from robust_vit.attacks import PGD, ce_loss, eval_mode, is_correct, pgd

WEIGHTS = Path("artifacts/vit_cpu_fashion_mnist.safetensors")
RADII = (2, 4, 8)  # in 1/255
STEPS = 20
Batches = list[tuple[Tensor, Tensor, Tensor]]  # images, labels, seeds (the examples' indices)
T = TypeVar("T")


@dataclass(frozen=True)
class Radius:
    """What one radius measured: robust flags, best seconds, the floor's steps and prices."""

    eps: int
    ours: Tensor
    theirs: Tensor
    seconds_ours: float
    seconds_theirs: float
    steps: int
    f: float
    fb: float

    def floor(self, n: int) -> float:
        """Seconds of the floor: ``n`` clean forwards and one forward+backward per step."""
        return n * self.f + self.steps * self.fb


def load_model(weights: Path) -> nn.Module:
    """The pretrained CPU ViT in eval mode, or a clear failure naming the make target."""
    if not weights.is_file():
        raise SystemExit(
            f"{weights} is missing: run `make artifacts/vit_cpu_fashion_mnist"
            ".safetensors` (pretrains the CPU ViT, several minutes) first."
        )
    return ViTClassifier(**MODEL, weights=str(weights)).model.eval()


def test_batches(examples: int, batch_size: int) -> Batches:
    """The first ``examples`` Fashion-MNIST test images, labels and indices, in batches."""
    data = FashionMNISTDataModule(batch_size=batch_size, augment=False)
    data.setup("test")
    batches, seen = [], 0
    for x, y in itertools.islice(data.test_dataloader(), -(-examples // batch_size)):
        x, y = x[: examples - seen], y[: examples - seen]
        batches.append((x, y, torch.arange(seen, seen + len(x))))
        seen += len(x)
    return batches


def timed(seconds: list[float], fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``, appending its wall seconds to ``seconds``."""
    start = time.perf_counter()
    out = fn(*args)
    seconds.append(time.perf_counter() - start)
    return out


def theirs_flags(
    model: nn.Module, attack: torchattacks.PGD, x: Tensor, y: Tensor, seed: int
) -> Tensor:
    """Robust flags of torchattacks' PGD on one batch, scored with one forward."""
    torch.manual_seed(seed)  # its random start draws from the global generator
    x_adv = attack(x, y)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def forward_seconds(model: nn.Module, x: Tensor, y: Tensor, backward: bool) -> float:
    """Seconds per example of a forward (with ``backward``: and the input gradient).

    Timed over ``STEPS`` passes back to back, as long as an attack's run is, not per pass: the
    best of many short timings would undercut what the same work costs when sustained.
    """
    start = time.perf_counter()
    for _ in range(STEPS):
        if backward:
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(ce_loss(model(xg), y).sum(), xg)
        else:
            with torch.no_grad():
                model(x)
    return (time.perf_counter() - start) / (STEPS * len(x))


def floor_steps(model: nn.Module, attack: PGD, batches: Batches, ours: Tensor) -> int:
    """Steps the examples take before they are misclassified (the floor's count), from our PGD.

    Counted by the loss, which sees every forward that takes a gradient: a row still classified
    correctly there is an example about to take a step.
    """
    steps = [0]

    def counting_ce(logits: Tensor, y: Tensor) -> Tensor:
        steps[0] += int((logits.argmax(1) == y).sum())
        return ce_loss(logits, y)

    robust = torch.cat(
        [
            is_correct(
                model,
                pgd(
                    model,
                    x,
                    y,
                    eps=attack.eps,
                    alpha=attack.rel_step * attack.eps,
                    steps=attack.steps,
                    early_exit=True,
                    seeds=seeds,
                    loss_fn=counting_ce,
                ),
                y,
            )
            for x, y, seeds in batches
        ]
    )
    if not torch.equal(robust, ours):
        raise RuntimeError("the counted run of our PGD gave other flags than the timed runs")
    return steps[0]


def measure(model: nn.Module, eps: int, batches: Batches, repeats: int) -> Radius:
    """Interleave ours and theirs batch by batch, then the floor's timings, ``repeats`` times."""
    ours_attack = PGD(eps=eps / 255, steps=STEPS, rel_step=0.25)
    theirs_attack = torchattacks.PGD(
        model, eps=eps / 255, alpha=eps / 255 / 4, steps=STEPS, random_start=True
    )
    seconds: dict[str, list[list[float]]] = {
        "ours": [[] for _ in batches],
        "theirs": [[] for _ in batches],
    }
    ours: list[Tensor] = []
    theirs: list[Tensor] = []
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        ours, theirs = [], []
        for b, (x, y, seeds) in enumerate(batches):
            ours.append(timed(seconds["ours"][b], ours_attack, model, x, y, seeds).robust)
            theirs.append(timed(seconds["theirs"][b], theirs_flags, model, theirs_attack, x, y, b))
        x, y, _ = batches[0]
        fwd.append(forward_seconds(model, x, y, backward=False))
        fwd_bwd.append(forward_seconds(model, x, y, backward=True))
    steps = floor_steps(model, ours_attack, batches, torch.cat(ours))
    best = {name: sum(min(runs) for runs in per_batch) for name, per_batch in seconds.items()}
    return Radius(
        eps,
        torch.cat(ours),
        torch.cat(theirs),
        best["ours"],
        best["theirs"],
        steps,
        min(fwd),
        min(fwd_bwd),
    )


def clean_flags(model: nn.Module, batches: Batches) -> Tensor:
    """Whether each example is classified correctly."""
    with torch.no_grad():
        return torch.cat([model(x).argmax(1) == y for x, y, _ in batches])


def report(rows: list[Radius], clean: Tensor, ns: argparse.Namespace) -> None:
    """Print the table and the reading against the targets."""
    n = len(clean)
    print(
        f"pretrained CPU ViT ({ns.weights}), n={n} test examples, batches of {ns.batch_size}, "
        f"{ns.threads} threads, PGD-{STEPS} L-inf, step eps/4, 1 random start, "
        f"each batch the best of {ns.repeats} interleaved runs; F, FB: ms per example"
    )
    print(
        f"{'radius':>7}{'clean':>7}{'robust ours':>12}{'robust TA':>10}{'steps/ex':>9}"
        f"{'F':>6}{'FB':>6}{'ours s':>8}{'TA s':>7}{'speed-up':>9}{'floor s':>8}"
        f"{'ours/floor':>11}{'TA/floor':>9}"
    )
    speed, to_floor = [], []
    for r in rows:
        floor = r.floor(n)
        speed.append(r.seconds_theirs / r.seconds_ours)
        to_floor.append(r.seconds_ours / floor)
        print(
            f"{f'{r.eps}/255':>7}{clean.float().mean():7.3f}{r.ours.float().mean():12.3f}"
            f"{r.theirs.float().mean():10.3f}{r.steps / n:9.2f}{r.f * 1e3:6.3f}"
            f"{r.fb * 1e3:6.3f}{r.seconds_ours:8.2f}{r.seconds_theirs:7.2f}{speed[-1]:8.2f}x"
            f"{floor:8.2f}{to_floor[-1]:10.2f}x{r.seconds_theirs / floor:8.2f}x"
        )
    print(
        f"targets: never slower than torchattacks: {verdict(min(speed) >= 1)} "
        f"(lowest {min(speed):.2f}x); at least 1.5x at 8/255: {verdict(speed[-1] >= 1.5)}; "
        f"ours within 1.3x of the floor at every radius: {verdict(max(to_floor) <= 1.3)} "
        f"(highest {max(to_floor):.2f}x)"
    )


def verdict(met: bool) -> str:
    """``met`` or ``missed``."""
    return "met" if met else "missed"


def main() -> None:
    """Measure every radius and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    model = load_model(ns.weights)
    batches = test_batches(ns.examples, ns.batch_size)
    clean = clean_flags(model, batches)
    with eval_mode(model):
        rows = [measure(model, eps, batches, ns.repeats) for eps in RADII]
    report(rows, clean, ns)


if __name__ == "__main__":
    main()
