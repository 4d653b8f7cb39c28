"""What the GPU check measured, the targets it checks, and its markdown page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import torch

from benchmarks.anf_epoch import SPEC_BUDGET
from benchmarks.pgd_vs_torchattacks import verdict
from benchmarks.profile_targets import ROUND_STEPS

BUDGET_S = 8 * 60
MFU_TARGET = 0.40
SAFER_TARGET = 1.10
TOLERANCE = 0.02  # bf16 and fp32 agree when their robust counts differ by at most 2% (>= 1)


@dataclass(frozen=True)
class ModelSpec:
    """A model of the check: its label and the ViTClassifier arguments."""

    label: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Setup:
    """Sizes and repetitions of one check (the GPU one or ``--tiny``)."""

    device: str
    precision: str
    models: tuple[ModelSpec, ...]
    batch_size: int
    warmup: int
    steps: int
    synthesis_steps: int
    eval_batch: int
    repeats: int
    radii: tuple[float, ...]

    def __post_init__(self) -> None:
        """At least 2 warm-up steps: FLOPs are counted on the last, never the first (ANF's)."""
        if self.warmup < 2:
            raise ValueError(f"warmup must be at least 2 steps, got {self.warmup}")

    @property
    def bf16(self) -> bool:
        """Whether the precision autocasts to bf16 (as ``bf16-mixed`` does)."""
        return self.precision == "bf16-mixed"


@dataclass(frozen=True)
class Measured:
    """One kind of step: median seconds, FLOPs per step, images per step, peak memory."""

    model: str
    kind: str
    seconds: float
    flops: float
    images: int
    peak_gib: float | None
    mfu: float | None = None

    @property
    def images_per_s(self) -> float:
        """Images per second."""
        return self.images / self.seconds


@dataclass(frozen=True)
class Throughput:
    """One PGD-20 implementation on one batch: median seconds and robust count."""

    model: str
    attack: str
    seconds: float
    examples: int
    robust: int


@dataclass(frozen=True)
class Precision:
    """One attack at one radius: robust counts in fp32, under bf16, bf16 scored in fp32."""

    model: str
    attack: str
    eps: float
    examples: int
    fp32: int
    bf16: int
    bf16_scored_fp32: int

    @property
    def agree(self) -> bool:
        """Both bf16 counts within the tolerance of the fp32 count."""
        slack = max(1, math.floor(TOLERANCE * self.examples))
        return max(abs(self.bf16 - self.fp32), abs(self.bf16_scored_fp32 - self.fp32)) <= slack


@dataclass(frozen=True)
class Target:
    """A performance target and what was measured."""

    name: str
    value: float | None
    met: bool | None


@dataclass
class Report:
    """Everything the check measured."""

    device: str
    peak_tflops: float | None
    setup: Setup
    steps: list[Measured] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    precision: list[Precision] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    wall_s: float = 0.0


def evaluate_targets(report: Report) -> list[Target]:
    """The largest model's ERM MFU >= 40%; every model's SAFER step <= 1.10x its PGD-AT step."""
    by = {(r.model, r.kind): r for r in report.steps}
    largest = report.setup.models[-1].label
    mfu = by[(largest, "ERM")].mfu
    targets = [
        Target(
            f"{largest} ERM step MFU >= {MFU_TARGET:.0%}",
            mfu,
            None if mfu is None else mfu >= MFU_TARGET,
        )
    ]
    for spec in report.setup.models:
        ratio = by[(spec.label, "SAFER")].seconds / by[(spec.label, "PGD-10-AT")].seconds
        targets.append(
            Target(
                f"{spec.label} SAFER step / PGD-10-AT step <= {SAFER_TARGET:.2f}x",
                ratio,
                ratio <= SAFER_TARGET,
            )
        )
    return targets


def markdown(report: Report) -> str:
    """The report as a markdown page."""
    s = report.setup
    peak = "n/a" if report.peak_tflops is None else f"{report.peak_tflops:g} TFLOP/s"
    lines = [
        f"## GPU check ({report.device})\n",
        f"`benchmarks/gpu_check.py{' --tiny' if s.device == 'cpu' else ''}`, "
        f"{date.today().isoformat()}: torch {torch.__version__}; precision {s.precision}; "
        f"dense bf16 peak: {peak}. Synthetic data, random weights; batch {s.batch_size}; "
        f"{s.warmup} warm-up and {s.steps} timed steps per kind (median). "
        f"Wall time {report.wall_s:.1f} s (budget {BUDGET_S} s: "
        f"{verdict(report.wall_s <= BUDGET_S)}).\n",
        "### Training steps\n",
        "ANF: a training step on clean + noisy inputs (noise fixed). ANF synthesis update: one "
        "noise update of `synthesize_noise` (clean and noisy forward, backward to the noise), "
        "data loading excluded. SAFER: PGD-10 examples, SAM on the selected 5% of layers. "
        "FLOPs counted by FlopCounterMode (matrix products and attention; on the CPU its "
        "flash attention is not counted). Peak memory: torch.cuda.max_memory_allocated "
        "(n/a on the CPU).\n",
        "| model | step | ms | images/s | GFLOP/step | TFLOP/s | MFU | peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.steps:
        mfu = "n/a" if r.mfu is None else f"{r.mfu:.1%}"
        gib = "n/a" if r.peak_gib is None else f"{r.peak_gib:.2f}"
        lines.append(
            f"| {r.model} | {r.kind} | {r.seconds * 1e3:.1f} | {r.images_per_s:.1f} "
            f"| {r.flops / 1e9:.2f} | {r.flops / r.seconds / 1e12:.3f} | {mfu} | {gib} |"
        )
    lines += anf_round(report)
    lines += [
        "\n### PGD-20 evaluation against torchattacks\n",
        f"L-inf 8/255, step eps/4, one random start, in {s.precision}, on the fixed batch "
        f"below; median of {s.repeats} interleaved runs.\n",
        "| model | attack | examples | robust | s | images/s | vs torchattacks |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    theirs = {t.model: t.seconds for t in report.throughput if t.attack == "torchattacks.PGD"}
    for t in report.throughput:
        lines.append(
            f"| {t.model} | {t.attack} | {t.examples} | {t.robust} | {t.seconds:.3f} "
            f"| {t.examples / t.seconds:.1f} | {theirs[t.model] / t.seconds:.2f}x |"
        )
    slack = f"{TOLERANCE:.0%} of the examples (at least 1)"
    lines += [
        "\n### Attacks under bf16 autocast against fp32\n",
        "The fixed batch: synthetic images labelled with the fp32 prediction, kept where the "
        "bf16 prediction agrees. Robust counts: attacked and scored in fp32; attacked and "
        f"scored under bf16; attacked under bf16, scored in fp32. Agree: both within {slack}. "
        "(Evaluation callbacks run outside autocast, in fp32; the training attacks of a "
        "bf16-mixed run run under it.)\n",
        "| model | attack | eps | examples | fp32 | bf16 | bf16, scored fp32 | agree |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in report.precision:
        lines.append(
            f"| {p.model} | {p.attack} | {p.eps * 255:g}/255 | {p.examples} | {p.fp32} "
            f"| {p.bf16} | {p.bf16_scored_fp32} | {'yes' if p.agree else 'no'} |"
        )
    informative = [p for p in report.precision if 0 < p.fp32 < p.examples]
    lines.append(
        f"\nbf16 attacks reach fp32's robust accuracy: "
        f"{'yes' if all(p.agree for p in report.precision) else 'no'} at every radius "
        f"({len(informative)} of {len(report.precision)} rows have an fp32 robust "
        "accuracy strictly between 0 and 1, where the comparison can show a gap).\n"
    )
    lines += ["### Targets\n"]
    for target in report.targets:
        value = "n/a" if target.value is None else f"{target.value:.3f}"
        state = (
            "not evaluated (no bf16 peak: pass --peak_tflops)"
            if target.met is None
            else verdict(target.met)
        )
        lines.append(f"- {target.name}: {value}, {state}")
    return "\n".join(lines) + "\n"


def anf_round(report: Report) -> list[str]:
    """One ANF round (SPEC_BUDGET synthesis updates, ROUND_STEPS training steps) against ERM."""
    by = {(r.model, r.kind): r for r in report.steps}
    lines = [
        f"\nAn ANF round, amortised: {SPEC_BUDGET} synthesis updates (the budget of "
        "benchmarks/anf_epoch.py, budget_fraction 0.3 of a Fashion-MNIST epoch) and "
        f"{ROUND_STEPS} training steps; its seconds, and its time over {ROUND_STEPS} ERM "
        "steps':"
    ]
    for spec in report.setup.models:
        erm, train = by[(spec.label, "ERM")], by[(spec.label, "ANF")]
        synthesis = by[(spec.label, "ANF synthesis update")]
        round_s = SPEC_BUDGET * synthesis.seconds + ROUND_STEPS * train.seconds
        ratio = round_s / (ROUND_STEPS * erm.seconds)
        lines.append(f"- {spec.label}: {round_s:.2f} s, {ratio:.2f}x")
    return lines
