"""Adversarial examples kept as float tensors, written beside the record and read back.

``AdversarialEval(save_adversarial=True)`` writes them. One safetensors file per stage (and per
rank under DDP, ``.rank<r>`` before the suffix) holds ``index`` (dataset indices) and ``label``,
then per ``<attack>@<radius>`` column ``x_adv:<column>``, the perturbed images in [0, 1] as
float32, and ``robust:<column>``, whether the model classified each one correctly. The metadata
lists the columns in suite order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

METADATA_KEY = "robust_vit.adversarial_examples"


def adversarial_file_name(section: str, stage: str, rank: int, world_size: int) -> str:
    """``<section>_<stage>.adversarial[.rank<r>].safetensors``."""
    part = f".rank{rank}" if world_size > 1 else ""
    return f"{section}_{stage}.adversarial{part}.safetensors"


class AdversarialExamples:
    """The examples of one rank's shard, gathered batch by batch on the CPU."""

    def __init__(self) -> None:
        self.tensors: dict[str, list[Tensor]] = defaultdict(list)
        self.columns: list[str] = []

    def add_batch(self, index: Tensor, label: Tensor) -> None:
        """The batch's dataset indices and labels."""
        self.tensors["index"].append(index.detach().cpu().long())
        self.tensors["label"].append(label.detach().cpu().long())

    def add(self, column: str, x_adv: Tensor, robust: Tensor) -> None:
        """One attack's examples on the batch, and whether each left the model correct."""
        if column not in self.columns:
            self.columns.append(column)
        self.tensors[f"x_adv:{column}"].append(x_adv.detach().float().cpu())
        self.tensors[f"robust:{column}"].append(robust.detach().cpu().bool())

    def write(self, path: Path) -> Path:
        """Write the shard's examples to ``path`` (safetensors)."""
        state = {key: torch.cat(parts).contiguous() for key, parts in self.tensors.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path), metadata={METADATA_KEY: json.dumps(self.columns)})
        return path


def read_adversarial_examples(path: str | Path) -> tuple[list[str], dict[str, Tensor]]:
    """The columns and tensors of a file :class:`AdversarialExamples` wrote."""
    with safe_open(str(path), framework="pt") as f:
        columns = json.loads((f.metadata() or {})[METADATA_KEY])
        return columns, {key: f.get_tensor(key) for key in f.keys()}
