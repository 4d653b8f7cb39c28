"""Time and peak memory of a SAFER step against a full PGD-AT step, and the cost of scoring.

Not a test. Times are measured in one process with the variants interleaved (one step of each
in turn, ``repeats`` rounds, median per variant), so that drift of a shared machine hits them
alike. Peak memory is measured with each variant in its own fresh process (CPU: peak resident
set size, which includes the Python/torch baseline printed on the first row; CUDA:
``torch.cuda.max_memory_allocated``). The steps are built from the same pure functions the
methods call (``pgd``, ``SAM``, ``candidate_layers``, ``layer_sharpness``), and like SAFER each
backward computes the gradients of the trained parameters only::

    PYTHONPATH=$PWD python benchmarks/safer_step.py --threads 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from functools import partial
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch.profiler import record_function

from lightning_modules.optim import weight_decay_groups
from robust_vit.adapters import AdapterConfig, adapter_parameter_names, inject_adapters
from robust_vit.attacks.pgd import eval_mode, pgd
from robust_vit.layers import candidate_layers, layer_parameters
from robust_vit.models import NormalizedViT
from robust_vit.sam import SAM
from robust_vit.sharpness import layer_sharpness, num_selected, select_layers

VARIANTS = (
    "baseline",
    "pgd_at",
    "safer",
    "safer_every_grad",
    "safer_base",
    "safer_lora",
    "scoring",
)
SAFER_VARIANTS = ("safer", "safer_every_grad", "safer_lora")
LORA = AdapterConfig("lora", rank=8, alpha=16.0, dropout=0.0)  # method/safer_lora.yaml


def build(args: argparse.Namespace) -> tuple[NormalizedViT, torch.Tensor, torch.Tensor]:
    """The model and one fixed batch."""
    torch.manual_seed(0)
    vit = timm.create_model(
        args.model,
        num_classes=10,
        img_size=args.img_size,
        in_chans=1,
        patch_size=args.patch_size,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.num_heads,
    )
    model = NormalizedViT(vit, (0.5,), (0.5,)).to(args.device)
    x = torch.rand(args.batch_size, 1, args.img_size, args.img_size, device=args.device)
    y = torch.randint(0, 10, (args.batch_size,), device=args.device)
    return model, x, y


def make_step(variant: str, model: NormalizedViT, args: argparse.Namespace) -> tuple[Any, int]:
    """One step of ``variant`` as a callable ``(x, y)``, and the elements its optimizer trains.

    The step does what the method does; the scoring trains nothing (0).

    ``safer_every_grad`` is SAFER as it was before it asked autograd for the selected layers'
    gradients only: both backward passes also compute every frozen layer's weight gradient.
    ``safer_lora`` trains rank-8 LoRA adapters on the selected layers instead of their weights.
    The step's parts are ``torch.profiler`` regions (free when no profiler runs).
    """
    attack = partial(pgd, eps=8 / 255, alpha=2 / 255, steps=args.steps)
    sgd = partial(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-4)
    layers = candidate_layers(model)
    if variant == "scoring":

        def score(x: torch.Tensor, y: torch.Tensor) -> None:
            layer_sharpness(model, layers, [(x, y)], attack=attack)

        return score, 0
    if variant in ("baseline", "pgd_at"):
        opt = sgd(weight_decay_groups(model))
    else:
        scores = layer_sharpness(model, layers, [build(args)[1:]], variant="first_order")
        chosen = set(select_layers(scores, num_selected(len(layers), fraction=args.fraction)))
        names = set(layer_parameters(model, [la for la in layers if la.name in chosen]))
        if variant == "safer_lora":
            inject_adapters(model, {n.rpartition(".")[0] for n in names}, LORA, seed=0)
            names = adapter_parameter_names(model)
        groups = weight_decay_groups(model, names=names)
        opt = SAM(groups, sgd, rho=0.05) if variant in SAFER_VARIANTS else sgd(groups)
    params = [p for g in opt.param_groups for p in g["params"]]
    grads_of = None if variant == "safer_every_grad" else params

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with record_function("attack"), eval_mode(model):
            x_adv = attack(model, x, y)
        model.zero_grad(set_to_none=True)
        with record_function("forward + backward"):
            F.cross_entropy(model(x_adv), y).backward(inputs=grads_of)
        if isinstance(opt, SAM):
            opt.first_step()
            model.zero_grad(set_to_none=True)
            with record_function("SAM forward + backward"):
                F.cross_entropy(model(x_adv), y).backward(inputs=grads_of)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.second_step()
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        with record_function("clean forward"), torch.no_grad():
            model(x)

    return step, sum(p.numel() for p in params)


def timed(step: Any, x: torch.Tensor, y: torch.Tensor, device: str) -> float:
    """Seconds of one call of ``step``."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(x, y)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, int]]:
    """Median step time of every variant, and the elements each trains.

    One step of each variant in turn, each with its own model.
    """
    torch.set_num_threads(args.threads)
    steps, trained = {}, {}
    for variant in VARIANTS[1:]:
        model, x, y = build(args)
        model.train()
        steps[variant], trained[variant] = make_step(variant, model, args)
        steps[variant](x, y)  # warm-up
    times: dict[str, list[float]] = {v: [] for v in steps}
    for _ in range(args.repeats):
        for variant, step in steps.items():
            times[variant].append(timed(step, x, y, args.device))
    return ({v: statistics.median(t) for v, t in times.items()}, trained)


def measure_memory(variant: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    """In a fresh process: peak memory after building and running ``variant`` twice."""
    torch.set_num_threads(args.threads)
    model, x, y = build(args)
    if variant != "baseline":
        model.train()
        step, _ = make_step(variant, model, args)
        step(x, y)
        step(x, y)
    queue.put((variant, peak_mb(args.device)))


def peak_mb(device: str) -> float:
    """Peak CUDA allocation, or peak resident set size of this process, in MiB."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def arguments() -> argparse.ArgumentParser:
    """The benchmark's options (the model and batch the steps are built for)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--embed_dim", type=int, default=48)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--num_heads", type=int, default=3)
    parser.add_argument("--patch_size", type=int, default=8)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (training and scoring)")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def main() -> None:
    """Run every variant and print one table."""
    args = arguments().parse_args()

    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    memory = {}
    for variant in VARIANTS:
        proc = ctx.Process(target=measure_memory, args=(variant, args, queue))
        proc.start()
        name, mb = queue.get()
        proc.join()
        memory[name] = mb
    medians, trained = interleaved_times(args)
    seconds = {"baseline": float("nan"), **medians}
    results = {v: (seconds[v], memory[v]) for v in VARIANTS}
    unit = "peak CUDA MiB" if args.device == "cuda" else "peak RSS MiB"
    print(
        f"device={args.device} threads={args.threads} batch={args.batch_size} "
        f"PGD steps={args.steps} model={args.model} dim={args.embed_dim} depth={args.depth}"
    )
    print(
        f"{'variant':<28}{'median s':>10}{'vs PGD-AT':>11}{unit:>16}{'vs PGD-AT':>11}"
        f"{'trained':>10}"
    )
    labels = {
        "baseline": "model + batch only",
        "pgd_at": "PGD-AT step (all layers)",
        "safer": "SAFER step (SAM, top 5%)",
        "safer_every_grad": "  same, every layer's grad",
        "safer_base": "selected layers, no SAM",
        "safer_lora": "SAFER-LoRA step (r 8)",
        "scoring": "one scoring of all layers",
    }
    ref, ref_mb = results["pgd_at"]
    for variant in VARIANTS:
        secs, mb = results[variant]
        ratio = "" if secs != secs else f"{secs / ref:.2f}x"
        shown = "-" if secs != secs else f"{secs:.4f}"
        count = "-" if variant in ("baseline", "scoring") else f"{trained[variant]:,}"
        print(
            f"{labels[variant]:<28}{shown:>10}{ratio:>11}{mb:>16.1f}{mb / ref_mb:>10.3f}x"
            f"{count:>10}"
        )


if __name__ == "__main__":
    main()
