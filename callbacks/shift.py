"""Accuracy under distribution shift: ImageNet-A/R (200-class mask), Sketch, V2, Stylized."""

from __future__ import annotations

import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from callbacks.evaluation import (
    StagedEvaluation,
    check_stages,
    gather_outcomes,
    log_scalars,
    proportion,
    rank_shard,
    reduce_counts,
    write_outputs,
    write_per_example,
)
from callbacks.results import record_path
from datamodules.shifts import SHIFT_SETS, ShiftFolder, imagenet_class_index
from robust_vit.attacks import eval_mode
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes
from robust_vit.ranges import LeftOpenUnitInterval, PositiveInt, check_ranges
from robust_vit.tables import shift_table

Stage = Literal["fit", "test"]


class ShiftEval(StagedEvaluation):
    """Accuracy on each given distribution-shift set, with n and its 95% Wilson interval.

    Each set is read through the ImageNet evaluation transform; ImageNet-A and -R are scored over
    the logits of their own 200 classes. Each rank scores every ``world_size``-th image and the
    counts are summed, so results do not depend on the number of ranks.

    Each set has its own images, so each gets its own per-example file beside the record,
    ``<section>_<stage>_<set>.outcomes.safetensors`` with one column named after the set (see
    :mod:`robust_vit.outcomes`); the set's entry in the section names it under ``per_example``.

    Args:
        sets: set name (``imagenet_a``, ``imagenet_r``, ``imagenet_sketch``, ``imagenetv2``,
            ``stylized_imagenet``) to its folder of class folders.
        class_index: the ImageNet ``train`` folder, or a text file of WordNet ids in class order.
        num_examples: images per set (the first ones); None: all.
        crop_fraction: evaluation centre-crop fraction.
        every_n_epochs: during fit, evaluate every this many epochs.
        stages: ``test`` and/or ``fit``.
        batch_size: images per forward pass.
        section: name of the record section, the markdown file and the logged keys.
    """

    @check_ranges("shifts")
    def __init__(
        self,
        sets: dict[str, str],
        class_index: str,
        num_examples: PositiveInt | None = None,
        crop_fraction: LeftOpenUnitInterval = 0.875,
        every_n_epochs: PositiveInt = 1,
        stages: list[Stage] = ["test"],  # noqa: B006 (jsonargparse needs a literal)
        batch_size: PositiveInt = 256,
        section: str = "shifts",
    ) -> None:
        check_stages("shifts", list(stages))
        unknown = sorted(set(sets) - set(SHIFT_SETS))
        if not sets or unknown:
            raise ConfigError(
                "shifts.sets", f"needs sets named from {list(SHIFT_SETS)}; got {sorted(sets)}."
            )
        self.sets, self.class_index = (
            dict(sets),
            imagenet_class_index(class_index, "shifts.class_index"),
        )
        self.num_examples, self.crop_fraction = num_examples, crop_fraction
        self.every_n_epochs, self.stages = every_n_epochs, list(stages)
        self.batch_size, self.section = batch_size, section

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        """Score this rank's share of every set, sum over ranks, log and record."""
        start = time.perf_counter()
        hp = pl_module.hparams
        counts: dict[str, Tensor] = {}
        entries: dict[str, dict[str, Any]] = {}
        outcomes: dict[str, Outcomes] = {}
        for name, root in self.sets.items():
            data = ShiftFolder(
                root,
                self.class_index,
                hp["img_size"],
                self.crop_fraction,
                hp["in_chans"],
                field=f"shifts.sets.{name}",
            )
            loader, n = rank_shard(data, self.num_examples or len(data), trainer, self.batch_size)
            mask = data.class_mask(len(self.class_index)) if SHIFT_SETS[name] else None
            index, correct = self._score(pl_module, loader, mask)
            counts[name] = correct.sum()
            outcomes[name] = gather_outcomes(trainer, Outcomes(index, {name: correct}))
            classes = int(mask.sum()) if mask is not None else len(self.class_index)
            entries[name] = {
                "n": n,
                "classes": classes,
                "masked": SHIFT_SETS[name],
                "source": str(root),
            }
        totals = reduce_counts(trainer, counts)
        result: dict[str, Any] = {
            "sets": {
                name: {**proportion(totals[name], e["n"]), **e} for name, e in entries.items()
            },
            "seconds": round(time.perf_counter() - start, 2),
        }
        prefix = "test" if stage == "test" else "val"
        log_scalars(
            pl_module,
            {
                f"{prefix}/{self.section}/{name}": entry["acc"]
                for name, entry in result["sets"].items()
            },
        )
        record = record_path(trainer)
        if trainer.is_global_zero:
            for name, entry in result["sets"].items():
                entry["per_example"] = write_per_example(
                    record, self.section, stage, outcomes[name], part=name
                )
            table = shift_table(result)
            rows = [
                [name, e["acc"], *e["ci"], e["n"], e["classes"]]
                for name, e in result["sets"].items()
            ]
            md = write_outputs(
                trainer,
                record,
                self.section,
                stage,
                result,
                table,
                rows,
                ["set", "acc", "ci_low", "ci_high", "n", "classes"],
            )
            rank_zero_info(f"\n{table}\n(written to {md})")
        return result

    def _score(
        self, pl_module: L.LightningModule, loader: DataLoader, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """This rank's images: their indices and whether each was correct (over ``mask``)."""
        indices, flags = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.bool)]
        with eval_mode(pl_module), torch.no_grad():
            for x, y, index in loader:
                logits = pl_module(x.to(pl_module.device))
                if logits.shape[1] != len(self.class_index):
                    raise ConfigError(
                        "shifts.class_index",
                        f"lists {len(self.class_index)} "
                        f"classes but the model has {logits.shape[1]} outputs.",
                    )
                if mask is not None:
                    logits = logits.masked_fill(~mask.to(logits.device), float("-inf"))
                indices.append(index)
                flags.append(logits.argmax(dim=1).cpu() == y)
        return torch.cat(indices), torch.cat(flags)
