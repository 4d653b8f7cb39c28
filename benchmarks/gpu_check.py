"""The GPU check: step throughput, MFU and memory of every method, PGD-20 speed, bf16 attacks.

One script, at most 8 minutes on one H100 (``make gpu-check``). On synthetic data of the right
shape (random images in [0, 1], random labels of 1000 classes, 224 px) and random weights
(no download) for ViT-S/16 and ViT-B/16 (``experiments/model/*.yaml``), under the precision of
``experiments/gpu.yaml`` (bf16-mixed), it measures:

1. Training steps of ERM, PGD-10-AT, ANF and SAFER, each through the project's method and a
   Lightning Trainer as ``robust-vit fit`` runs it: after warm-up, each step timed between
   ``on_train_batch_start`` and ``on_train_batch_end`` with the device synchronised at both ends
   (the batch is already on the device; data loading is excluded), median of the timed steps.
   FLOPs are counted once per step kind by ``torch.utils.flop_counter.FlopCounterMode`` on an
   untimed warm-up step; MFU = achieved FLOP/s / the GPU's dense bf16 peak. Peak memory is
   ``torch.cuda.max_memory_allocated`` over the timed steps (weights and optimizer state
   included). The ANF step is a training step on clean + noisy inputs with its noise fixed
   (synthesised once before the timed steps); one noise-synthesis update is reported apart.
2. PGD-20 evaluation (L-inf 8/255, step eps/4, one random start) on one batch: ours with early
   exit (as the evaluation runs it), ours without (every example takes all 20 steps, as
   torchattacks does), and ``torchattacks.PGD`` scored with one forward.
3. Attacks under bf16 autocast against fp32 on one fixed batch (images labelled with the fp32
   prediction, kept where the bf16 prediction agrees): robust accuracy of PGD-20 and FGSM at a
   ladder of radii, attacked and scored in fp32, attacked and scored under bf16, and attacked
   under bf16 but scored in fp32.

``--tiny`` runs every code path on the CPU with a tiny ViT in seconds (CI), under bf16 autocast
on the CPU; MFU there is n/a unless ``--peak_tflops`` gives a peak::

    PYTHONPATH=$PWD python benchmarks/gpu_check.py [--tiny] [--out runs/gpu_check.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchattacks
import yaml
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchmarks.gpu_check_report import (
    Measured,
    ModelSpec,
    Precision,
    Report,
    Setup,
    Throughput,
    evaluate_targets,
    markdown,
)
from benchmarks.pgd_vs_torchattacks import theirs_flags
from benchmarks.safer_step import timed
from benchmarks.step_meter import StepMeter, flop_counter, synchronize
from datamodules.tensor_images import TensorImageDataset
from lightning_modules import ViTClassifier
from lightning_modules.methods import ANF, ERM, PGDAT, SAFER, FinetuneMethod
from robust_vit.anf import noise_shape, synthesize_noise
from robust_vit.attacks import FGSM, PGD, Attack, is_correct
from robust_vit.errors import ConfigError
from robust_vit.records import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets (H100 and H200
# Tensor Core GPU data sheets, A100 data sheet: half the "with sparsity" figure), matched in this
# order as case-insensitive substrings of torch.cuda.get_device_name(). Other GPUs: --peak_tflops.
PEAK_BF16_TFLOPS = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 SXM", 989.4),
    ("H100 80GB HBM3", 989.4),
    ("A100", 312.0),
)


def synthetic_images(spec: ModelSpec, n: int) -> TensorImageDataset:
    """``n`` random images of the model's size and random labels, in the in-memory dataset."""
    generator = torch.Generator().manual_seed(0)
    size, chans = spec.kwargs["img_size"], spec.kwargs["in_chans"]
    images = torch.randint(0, 256, (n, chans, size, size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, spec.kwargs["num_classes"], (n,), generator=generator)
    return TensorImageDataset(images, labels, size, chans)


def autocast(device: str, bf16: bool) -> AbstractContextManager:
    """bf16 autocast as Lightning's bf16-mixed precision applies it (off: fp32)."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)


def experiment(path: str) -> dict[str, Any]:
    """A YAML of ``experiments/``."""
    return yaml.safe_load((REPO / "experiments" / path).read_text())


def setup(tiny: bool, batch_size: int | None) -> Setup:
    """The GPU check's sizes (ViT-S/16 and ViT-B/16, 224 px), or the tiny CPU ones."""
    precision = experiment("gpu.yaml")["trainer"]["precision"]
    if tiny:
        vit = ModelSpec(
            "tiny ViT",
            {
                "model_name": "vit_tiny_patch16_224",
                "num_classes": 10,
                "img_size": 32,
                "in_chans": 3,
                "patch_size": 8,
                "model_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2},
            },
        )
        return Setup(
            "cpu",
            precision,
            (vit,),
            batch_size or 8,
            warmup=2,
            steps=2,
            synthesis_steps=2,
            eval_batch=16,
            repeats=1,
            radii=(1 / 255, 8 / 255),
        )
    models = tuple(
        ModelSpec(
            label,
            {
                **experiment(f"model/{name}.yaml")["model"],
                "num_classes": 1000,
                "img_size": 224,
                "in_chans": 3,
            },
        )
        for label, name in (
            ("ViT-S/16", "vit_small_patch16_224"),
            ("ViT-B/16", "vit_base_patch16_224"),
        )
    )
    return Setup(
        "cuda",
        precision,
        models,
        batch_size or 128,
        warmup=3,
        steps=20,
        synthesis_steps=10,
        eval_batch=128,
        repeats=3,
        radii=tuple(r / 255 for r in (0.25, 0.5, 1, 2, 4, 8)),
    )


def step_methods(s: Setup) -> dict[str, Callable[[], FinetuneMethod]]:
    """The four training steps, by name: the methods' defaults with PGD-10 at 8/255.

    ANF synthesises once, at the first (warm-up) step, and trains with that noise after (one
    round as long as the run). SAFER scores its layers on one batch of at most 32 before the
    first step, then trains the selected 5% with SAM.
    """
    total = s.warmup + s.steps
    return {
        "ERM": ERM,
        "PGD-10-AT": lambda: PGDAT(steps=10),
        "ANF": lambda: ANF(max_synthesis_steps=1, rounds=1, steps_per_round=total),
        "SAFER": lambda: SAFER(steps=10, score_batches=1, score_batch_size=min(s.batch_size, 32)),
    }


def new_model(spec: ModelSpec, s: Setup, method: FinetuneMethod | None = None) -> ViTClassifier:
    """A freshly initialised classifier on the check's device (the same weights every time)."""
    torch.manual_seed(0)
    return ViTClassifier(**spec.kwargs, method=method).to(s.device)


def measure_step(spec: ModelSpec, kind: str, method: FinetuneMethod, s: Setup) -> list[Measured]:
    """Train ``warmup + steps`` steps of ``method`` through Lightning and meter them.

    For ANF, the trained model's noise-synthesis update is measured too.
    """
    module = new_model(spec, s, method)
    data = synthetic_images(spec, (s.warmup + s.steps) * s.batch_size)
    meter = StepMeter(s.warmup, s.device)
    with tempfile.TemporaryDirectory() as root:  # SAFER's layer chart lands there
        trainer = L.Trainer(
            accelerator=s.device,
            devices=1,
            precision=s.precision,
            max_steps=s.warmup + s.steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            callbacks=[meter],
            default_root_dir=root,
        )
        trainer.fit(module, DataLoader(data, batch_size=s.batch_size))
    rows = [
        Measured(
            spec.label,
            kind,
            statistics.median(meter.seconds),
            meter.flops,
            s.batch_size,
            meter.peak_bytes / 2**30 if s.device == "cuda" else None,
        )
    ]
    if isinstance(method, ANF):
        x = torch.stack([data[i][0] for i in range(s.batch_size)])
        rows.append(measure_synthesis(spec, module, x, s))
    del module, trainer
    free_device_memory()
    return rows


def measure_synthesis(spec: ModelSpec, module: ViTClassifier, x: Tensor, s: Setup) -> Measured:
    """One ANF noise update (``synthesize_noise``, as ANF calls it) in the check's precision.

    Its budget is spent in full (eps is out of reach), on one batch already on the device (the
    synthesis loader's data loading is excluded). Per update; the closing test is shared out.
    """
    model, x = module.model.to(s.device), x.to(s.device)  # fit's teardown moved it to the CPU
    shape = noise_shape(model, x, "token")

    def synthesis(x: Tensor, _: Tensor) -> None:
        with autocast(s.device, s.bf16):
            synthesize_noise(
                model,
                iter_forever(x),
                shape,
                eps=0.0,
                max_steps=s.synthesis_steps,
                generator=torch.Generator().manual_seed(0),
            )

    synthesis(x, x)  # warm-up
    with flop_counter() as counter:
        synthesis(x, x)
    synchronize(s.device)
    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(timed(synthesis, x, x, s.device) for _ in range(s.repeats))
    peak = torch.cuda.max_memory_allocated() / 2**30 if s.device == "cuda" else None
    return Measured(
        spec.label,
        "ANF synthesis update",
        seconds / s.synthesis_steps,
        counter.get_total_flops() / s.synthesis_steps,
        len(x),
        peak,
    )


def iter_forever(x: Tensor) -> Iterator[Tensor]:
    """``x``, again and again."""
    while True:
        yield x


def free_device_memory() -> None:
    """Collect what was dropped (models hold reference cycles) and return the device memory."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def labelled_batch(spec: ModelSpec, model: nn.Module, s: Setup) -> tuple[Tensor, Tensor]:
    """Random images labelled with the model's fp32 prediction, kept where bf16 agrees."""
    shape = (
        s.eval_batch,
        spec.kwargs["in_chans"],
        spec.kwargs["img_size"],
        spec.kwargs["img_size"],
    )
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)).to(s.device)
    with torch.no_grad():
        fp32 = model(x).argmax(1)
        with autocast(s.device, True):
            bf16 = model(x).argmax(1)
    keep = fp32 == bf16
    return x[keep], fp32[keep]


def measure_pgd(
    spec: ModelSpec, model: nn.Module, x: Tensor, y: Tensor, s: Setup
) -> list[Throughput]:
    """PGD-20 at 8/255 on one batch in the check's precision: ours (early exit or not), theirs.

    Interleaved ``repeats`` times after one warm-up round; median seconds of each.
    """
    eps, seeds = 8 / 255, torch.arange(len(x))
    ta = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=20, random_start=True)
    runs: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "ours, early exit": lambda x, y: PGD(eps=eps)(model, x, y, seeds).robust,
        "ours, all 20 steps": lambda x, y: (
            PGD(eps=eps, early_exit=False)(model, x, y, seeds).robust
        ),
        "torchattacks.PGD": lambda x, y: theirs_flags(model, ta, x, y, 0),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    robust: dict[str, int] = {}
    with autocast(s.device, s.bf16):
        for name, run in runs.items():
            robust[name] = int(run(x, y).sum())  # warm-up
        for _ in range(s.repeats):
            for name, run in runs.items():
                seconds[name].append(timed(run, x, y, s.device))
    return [
        Throughput(spec.label, name, statistics.median(seconds[name]), len(x), robust[name])
        for name in runs
    ]


def measure_precision(
    spec: ModelSpec, model: nn.Module, x: Tensor, y: Tensor, s: Setup
) -> list[Precision]:
    """PGD-20 and FGSM robust counts at every radius: fp32, bf16, bf16 attack scored in fp32."""
    seeds = torch.arange(len(x))
    rows = []
    for eps in s.radii:
        attack: Attack
        for attack in (PGD(eps=eps), FGSM(eps=eps)):
            fp32 = attack(model, x, y, seeds)
            with autocast(s.device, True):
                bf16 = attack(model, x, y, seeds)
            with torch.no_grad():
                rescored = is_correct(model, bf16.x_adv, y)
            rows.append(
                Precision(
                    spec.label,
                    attack.name,
                    eps,
                    len(x),
                    int(fp32.robust.sum()),
                    int(bf16.robust.sum()),
                    int(rescored.sum()),
                )
            )
    return rows


def peak_flops(device: str, override: float | None) -> float | None:
    """The dense bf16 peak FLOP/s: the override, the table's for this GPU, or None."""
    if override is not None:
        return override * 1e12
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name().lower()
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key.lower() in name), None)


def with_mfu(row: Measured, peak: float | None) -> Measured:
    """``row`` with its MFU against ``peak`` (None without a peak)."""
    mfu = None if peak is None else row.flops / row.seconds / peak
    return dataclasses.replace(row, mfu=mfu)


def run_check(s: Setup, peak_tflops: float | None) -> Report:
    """Measure everything, model by model."""
    start = time.perf_counter()
    device = torch.cuda.get_device_name() if s.device == "cuda" else "CPU"
    peak = peak_flops(s.device, peak_tflops)
    report = Report(device, None if peak is None else peak / 1e12, s)
    for spec in s.models:
        for kind, method in step_methods(s).items():
            progress(f"{spec.label}: {kind} steps")
            rows = measure_step(spec, kind, method(), s)
            report.steps.extend(with_mfu(row, peak) for row in rows)
        progress(f"{spec.label}: PGD-20 throughput and bf16 against fp32")
        module = new_model(spec, s).eval()
        x, y = labelled_batch(spec, module.model, s)
        report.throughput.extend(measure_pgd(spec, module.model, x, y, s))
        report.precision.extend(measure_precision(spec, module.model, x, y, s))
        del module
        free_device_memory()
    report.targets = evaluate_targets(report)
    report.wall_s = time.perf_counter() - start
    return report


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def arguments() -> argparse.ArgumentParser:
    """The check's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny ViT on the CPU, seconds (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "runs" / "gpu_check.md",
        help="the markdown report (and the same with .json beside it)",
    )
    parser.add_argument(
        "--peak_tflops",
        type=float,
        default=None,
        help="dense bf16 peak in TFLOP/s (default: from the GPU's name)",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="training batch (default: 128 on the GPU, 8 with --tiny)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (the tiny model gains nothing from more)",
    )
    return parser


def check(ns: argparse.Namespace) -> None:
    """Fail before any compute on a bad option or a missing GPU."""
    if ns.peak_tflops is not None and not ns.peak_tflops > 0:
        raise ConfigError("--peak_tflops", f"must be > 0 (TFLOP/s), got {ns.peak_tflops}.")
    if ns.batch_size is not None and ns.batch_size < 1:
        raise ConfigError("--batch_size", f"must be at least 1, got {ns.batch_size}.")
    if ns.threads < 1:
        raise ConfigError("--threads", f"must be at least 1, got {ns.threads}.")
    if not ns.tiny and not torch.cuda.is_available():
        raise ConfigError(
            "--tiny",
            "no CUDA device here: run on a GPU, or pass --tiny for the CPU run of every code path.",
        )


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info lines and possible-user warnings off in the block (stdout: the report)."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            yield
    finally:
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> Report:
    """Run the check, print the report and write it (markdown and JSON)."""
    parser = arguments()
    ns = parser.parse_args(argv)
    try:
        check(ns)
    except ConfigError as err:
        parser.error(str(err))
    torch.set_num_threads(ns.threads)
    with quiet_lightning():
        report = run_check(setup(ns.tiny, ns.batch_size), ns.peak_tflops)
    page = markdown(report)
    print(page)
    write_text_atomic(ns.out, page)
    write_text_atomic(
        ns.out.with_suffix(".json"), json.dumps(dataclasses.asdict(report), indent=1, default=str)
    )
    return report


if __name__ == "__main__":
    main()
