"""How far each run's final weights moved from the weights it started from, per layer.

Used in docs/safer.md to see what stage 2 changed: for every run folder given, the relative
change ||w_final - w_start|| / ||w_start|| of each ViT parameter tensor, the start read from the
run's `model.weights` file and the end from its `checkpoints/last.ckpt`.

    PYTHONPATH=$PWD python scripts/weight_change.py runs/safer/*/seed0 --top 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file


def relative_changes(run_dir: Path) -> dict[str, float]:
    """Parameter name -> relative L2 change between the start weights and ``last.ckpt``."""
    (config_file,) = run_dir.rglob("config.yaml")
    start = load_file(yaml.safe_load(config_file.read_text())["model"]["weights"])
    (ckpt,) = run_dir.rglob("last.ckpt")
    end = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    changes = {}
    for name, w0 in start.items():
        w1 = end[f"model.vit.{name}"]
        if w0.is_floating_point() and w0.numel() > 1:
            changes[name] = float((w1 - w0).norm() / w0.norm().clamp_min(1e-12))
    return changes


def main() -> None:
    """Print the overall and the largest per-tensor changes of each run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=3)
    ns = parser.parse_args()
    for run_dir in ns.runs:
        changes = relative_changes(run_dir)
        moved = sum(1 for v in changes.values() if v > 0)
        top = sorted(changes.items(), key=lambda kv: -kv[1])[: ns.top]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in top)
        print(f"{run_dir}: {moved}/{len(changes)} tensors moved; largest: {shown}")


if __name__ == "__main__":
    main()
