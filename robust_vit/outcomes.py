"""Per-example outcomes: which evaluated examples an evaluation got right, as packed bits.

An :class:`Outcomes` holds the dataset indices of the evaluated examples (ascending, each once)
and one column of correct bits per outcome (``clean``, ``pgd20_linf@8/255``,
``worst_case@8/255``, ``fog/3``, ...). On disk it is a safetensors file whose columns are packed
eight examples to a byte; the record that summarises it names the file and its sha256, so that
any comparison can pair two evaluations example by example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from robust_vit.threat import Threat, radius_text

INDEX_KEY = "index"
COLUMN_PREFIX = "correct/"
SUFFIX = ".outcomes.safetensors"


def outcomes_file_name(section: str, stage: str, part: str | None = None) -> str:
    """The file an evaluation writes beside its record: ``adversarial_test.outcomes.safetensors``.

    ``part`` names one of several files of a section (a shift set: ``shifts_test_imagenet_a``).
    """
    return f"{section}_{stage}{'_' + part if part else ''}{SUFFIX}"


def attack_column(name: str, threat: Threat) -> str:
    """The column of an attack (or the worst case) at a threat: ``pgd20_linf@8/255``."""
    return f"{name}@{radius_text(threat.eps)}"


def corruption_column(corruption: str, severity: int) -> str:
    """The column of a corruption at a severity: ``fog/3``."""
    return f"{corruption}/{severity}"


@dataclass(frozen=True)
class Outcomes:
    """The evaluated examples' dataset indices and, per outcome, whether each was correct.

    Args:
        index: int64 ``[n]``, the dataset index of each example, ascending and unique.
        correct: outcome name -> bool ``[n]``, aligned with ``index``.
    """

    index: Tensor
    correct: Mapping[str, Tensor]

    def __post_init__(self) -> None:
        """Refuse misaligned columns and unsorted or repeated indices."""
        if self.index.dim() != 1 or self.index.dtype != torch.int64:
            raise ValueError(f"index must be int64 [n], got {self.index.dtype} {self.index.shape}")
        if self.index.numel() > 1 and not bool((self.index[1:] > self.index[:-1]).all()):
            raise ValueError("index must be ascending with each example once")
        for name, bits in self.correct.items():
            if bits.dtype != torch.bool or bits.shape != self.index.shape:
                raise ValueError(f"column {name!r} must be bool {tuple(self.index.shape)}")

    @property
    def n(self) -> int:
        """The number of evaluated examples."""
        return self.index.numel()

    def accuracy(self, name: str) -> float:
        """The share of examples correct under outcome ``name``."""
        return float(self.correct[name].float().mean()) if self.n else float("nan")


def merge_shards(shards: Sequence[Outcomes]) -> Outcomes:
    """One :class:`Outcomes` from each rank's share: concatenated, then sorted by index.

    The result does not depend on how the examples were split across ranks or batches. Shards
    must hold the same outcomes and no example twice.
    """
    names = [sorted(shard.correct) for shard in shards]
    if any(n != names[0] for n in names):
        raise ValueError(f"shards hold different outcomes: {names}")
    index = torch.cat([shard.index for shard in shards]) if shards else torch.empty(0).long()
    order = torch.argsort(index)
    merged = {
        name: torch.cat([shard.correct[name] for shard in shards])[order]
        for name in (names[0] if shards else [])
    }
    return Outcomes(index[order], merged)


def pack(bits: Tensor) -> Tensor:
    """Bool ``[n]`` as uint8 ``[ceil(n / 8)]``, eight examples to a byte."""
    return torch.from_numpy(np.packbits(bits.cpu().numpy().astype(np.uint8)))


def unpack(packed: Tensor, n: int) -> Tensor:
    """The first ``n`` bits of a packed column, as bool ``[n]``."""
    return torch.from_numpy(np.unpackbits(packed.numpy(), count=n).astype(bool))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_outcomes(path: Path, outcomes: Outcomes) -> str:
    """Write ``outcomes`` as safetensors (through a temporary file); return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {INDEX_KEY: outcomes.index.cpu().contiguous()}
    tensors.update({COLUMN_PREFIX + k: pack(v) for k, v in outcomes.correct.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"n": str(outcomes.n)})
    tmp.replace(path)
    return file_sha256(path)


def read_outcomes(path: Path, sha256: str | None = None) -> Outcomes:
    """The outcomes in ``path``; ValueError when its sha256 is not the one a record names."""
    if sha256 is not None and file_sha256(path) != sha256:
        raise ValueError(f"{path} does not hold the outcomes its record names (sha256 differs)")
    tensors = load_file(str(path))
    index = tensors.pop(INDEX_KEY)
    n = index.numel()
    return Outcomes(
        index, {k.removeprefix(COLUMN_PREFIX): unpack(v, n) for k, v in tensors.items()}
    )
