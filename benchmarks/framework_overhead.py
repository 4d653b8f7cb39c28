"""Framework overhead: a `robust-vit fit` ERM epoch against a minimal plain-PyTorch loop.

Same model (the CPU default ViT), same data (Fashion-MNIST), same batch size, optimizer and
thread count; the two are interleaved (plain, ours, plain, ours, ...) and the best of each is
compared, because the machine is shared and noisy. Prints images/s of both and the ratio
(target: ours >= 0.95 of the plain loop).

    python benchmarks/framework_overhead.py --batches 200 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from benchmarks.epoch_rate import fit_epoch_rate
from datamodules import FashionMNISTDataModule
from lightning_modules import ViTClassifier

MODEL = dict(
    model_name="vit_tiny_patch16_224",
    num_classes=10,
    img_size=32,
    in_chans=1,
    patch_size=8,
    model_kwargs={"embed_dim": 48, "depth": 4, "num_heads": 3},
)


def plain_loop(batches: int, batch_size: int) -> float:
    """Images/s of a hand-written training loop over the same model and data."""
    torch.manual_seed(0)
    model = ViTClassifier(**MODEL).model  # the same NormalizedViT the framework trains
    data = FashionMNISTDataModule(batch_size=batch_size, augment=False)
    data.setup("fit")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    model.train()
    images, start, end = 0, time.perf_counter(), 0.0
    for i, (x, y) in enumerate(data.train_dataloader()):
        if i == batches:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(x)
        end = time.perf_counter()
    return images / (end - start)


def framework_epoch(batches: int, batch_size: int, threads: int) -> float:
    """Images/s of the framework's ERM training epoch, read from the run's record."""
    return fit_epoch_rate("erm", batches, threads, [f"--data.init_args.batch_size={batch_size}"])


def main() -> None:
    """Run both loops interleaved and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    os.environ.setdefault("WANDB_MODE", "disabled")
    plain, ours = [], []
    for _ in range(ns.repeats):
        plain.append(plain_loop(ns.batches, ns.batch_size))
        ours.append(framework_epoch(ns.batches, ns.batch_size, ns.threads))
    print(f"plain PyTorch loop: {max(plain):8.1f} img/s  (runs: {[round(v) for v in plain]})")
    print(f"robust-vit fit:     {max(ours):8.1f} img/s  (runs: {[round(v) for v in ours]})")
    print(f"ratio ours/plain:   {max(ours) / max(plain):.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
