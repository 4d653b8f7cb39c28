"""Corruption robustness as a callback: 15 corruptions x 5 severities, rendered once and cached."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from callbacks.evaluation import (
    StagedEvaluation,
    check_stages,
    eval_dataset,
    gather_outcomes,
    loader_dataset,
    log_plot,
    log_scalars,
    proportion,
    rank_shard,
    reduce_counts,
    write_outputs,
    write_per_example,
)
from callbacks.results import record_path
from datamodules.corruptions import cifar_c_dataset, open_cifar_c
from robust_vit.attacks import CLEAN, eval_mode
from robust_vit.corruptions import (
    CORRUPTIONS,
    MIN_SIDE,
    SEVERITIES,
    alexnet_reference,
    check_corruptions,
    corruption_metrics,
    reference_from_record,
    render_corruptions,
    renderer_version,
)
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes, corruption_column
from robust_vit.plots import corruption_heatmap
from robust_vit.ranges import NonNegativeInt, OneToFive, PositiveInt, check_ranges
from robust_vit.tables import corruption_table

Stage = Literal["fit", "test"]


class CorruptionEval(StagedEvaluation):
    """Accuracy per corruption x severity, mean corruption accuracy, and CE / mCE if referenced.

    With ``data_dir`` it reads a pre-rendered set in the CIFAR-10-C layout (CIFAR-10-C,
    CIFAR-100-C). Without it, the first ``num_examples`` images of the stage's dataset are
    corrupted once (rank zero, seeded per image, when the trainer sets up) into a folder of
    ``cache_dir`` named by a hash of the images, labels, seed and renderer, and read from there.

    Beside the record it writes ``<section>_<stage>.outcomes.safetensors``: per evaluated image,
    its index and a correct bit for each ``<corruption>/<severity>`` and for ``clean`` when the
    stage has a dataset to score clean (see :mod:`robust_vit.outcomes`); the section's
    ``per_example`` names it with its sha256.

    Args:
        data_dir: folder of a pre-rendered set (``<corruption>.npy`` + ``labels.npy``).
        cache_dir: where rendered sets are cached (one subfolder per content hash).
        corruptions: names to evaluate (default: all 15).
        severities: severities to evaluate (default: 1..5).
        num_examples: images per corruption and severity (the first ones).
        seed: rendering seed.
        reference: ``alexnet`` (published ImageNet-C errors), a reference run's ``results.json``
            path, or None for accuracies only.
        every_n_epochs: during fit, evaluate every this many epochs.
        stages: ``test`` and/or ``fit``.
        batch_size: images per forward pass.
        section: name of the record section, the markdown file and the logged keys.
    """

    @check_ranges("corruptions")
    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "data/corruption_cache",
        corruptions: list[str] | None = None,
        severities: list[OneToFive] | None = None,
        num_examples: PositiveInt = 1000,
        seed: NonNegativeInt = 0,
        reference: str | None = None,
        every_n_epochs: PositiveInt = 1,
        stages: list[Stage] = ["test"],  # noqa: B006 (jsonargparse needs a literal)
        batch_size: PositiveInt = 256,
        section: str = "corruptions",
    ) -> None:
        check_stages("corruptions", list(stages))
        self.corruptions = list(corruptions or CORRUPTIONS)
        check_corruptions(self.corruptions, "corruptions.corruptions")
        self.severities = list(severities or SEVERITIES)
        if reference not in (None, "alexnet") and not Path(str(reference)).is_file():
            raise ConfigError(
                "corruptions.reference",
                f"{reference!r} is neither 'alexnet' nor a results.json file.",
            )
        if data_dir is not None:
            if not Path(data_dir).is_dir():
                raise ConfigError("corruptions.data_dir", f"{data_dir!r} is not a directory.")
            for name in self.corruptions:
                open_cifar_c(data_dir, name, "corruptions.data_dir")
        self.data_dir, self.cache_dir = data_dir, Path(cache_dir)
        self.num_examples, self.seed, self.reference = num_examples, seed, reference
        self.every_n_epochs, self.stages = every_n_epochs, list(stages)
        self.batch_size, self.section = batch_size, section
        self._folders: dict[str, Path] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Find or render the stage's corruption set before any compute (rank zero renders)."""
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets it per run
        if self.data_dir is None and stage in self.stages and datamodule is not None:
            dataset = loader_dataset(
                datamodule.test_dataloader() if stage == "test" else datamodule.val_dataloader()
            )
            self._folders[stage] = self._render(trainer, dataset, stage)

    def source_folder(self, trainer: L.Trainer, stage: str) -> Path:
        """The pre-rendered folder, or the set rendered from the stage's images."""
        if self.data_dir is not None:
            return Path(self.data_dir)
        if stage not in self._folders:  # loaders given to the trainer, not by a datamodule
            self._folders[stage] = self._render(trainer, eval_dataset(trainer, stage), stage)
        return self._folders[stage]

    def _render(self, trainer: L.Trainer, dataset: Dataset | None, stage: str) -> Path:
        """Render the first images (rank zero) into the cache folder keyed by their content."""
        if dataset is None:
            raise ConfigError("data", f"CorruptionEval needs a {stage} dataset; none was found.")
        height, width = dataset[0][0].shape[-2:]
        if min(height, width) < MIN_SIDE:
            raise ConfigError(
                "data.img_size",
                f"the {stage} images are {height}x{width} px; rendering corruptions needs at "
                f"least {MIN_SIDE}. Raise data.img_size, or point corruptions.data_dir at a "
                "pre-rendered set.",
            )
        renderer_version("corruptions")  # the renderer is installed, on every rank
        folder = ""
        if trainer.is_global_zero:
            n = min(self.num_examples, len(dataset))  # type: ignore[arg-type]
            images, labels = zip(*(dataset[i] for i in range(n)), strict=True)
            x = torch.stack(images).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            y = np.asarray([int(v) for v in labels], dtype=np.int64)
            folder = str(render_corruptions(x, y, self.cache_dir, self.corruptions, self.seed))
        return Path(trainer.strategy.broadcast(folder))

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        """Score this rank's share of every corruption x severity, sum over ranks, record."""
        start = time.perf_counter()
        folder = self.source_folder(trainer, stage)
        hp = pl_module.hparams
        counts: dict[tuple[str, ...], Tensor] = {}
        columns: dict[str, Tensor] = {}
        indices: list[Tensor] = []
        n = 0
        for name in self.corruptions:
            for severity in self.severities:
                data = cifar_c_dataset(folder, name, severity, hp["img_size"], hp["in_chans"])
                index, correct, n = self._score(trainer, pl_module, data, self.num_examples)
                if indices and not torch.equal(indices[0], index):
                    raise ConfigError(
                        "corruptions.data_dir",
                        f"{name} at severity {severity} gives {n} images where the first set "
                        "gives another number; every corruption and severity must hold the same "
                        "images.",
                    )
                indices.append(index)
                counts[(name, str(severity))] = correct.sum()
                columns[corruption_column(name, severity)] = correct
        clean = eval_dataset(trainer, stage)
        if clean is not None and len(clean) >= n:  # type: ignore[arg-type]
            _, correct, _ = self._score(trainer, pl_module, clean, n)
            counts[("clean",)] = correct.sum()
            columns[CLEAN] = correct
        outcomes = gather_outcomes(trainer, Outcomes(indices[0], columns))
        totals = reduce_counts(trainer, counts)
        accuracy = {
            c: {str(s): proportion(totals[(c, str(s))], n) for s in self.severities}
            for c in self.corruptions
        }
        clean_acc = totals[("clean",)] / n if ("clean",) in totals else float("nan")
        result: dict[str, Any] = {
            "n": n,
            "seed": self.seed,
            "severities": self.severities,
            "source": str(folder),
            "clean": proportion(totals.get(("clean",), 0), n if ("clean",) in totals else 0),
            "accuracy": accuracy,
            "seconds": round(time.perf_counter() - start, 2),
        }
        acc_values = {c: {int(s): v["acc"] for s, v in by.items()} for c, by in accuracy.items()}
        result.update(corruption_metrics(acc_values, clean_acc, self._reference()))
        prefix = "test" if stage == "test" else "val"
        scalars = {f"{prefix}/{self.section}/mean_acc": result["mean_accuracy"]}
        if "mce" in result:
            scalars[f"{prefix}/{self.section}/mce"] = result["mce"]
        log_scalars(pl_module, scalars)
        record = record_path(trainer)
        if trainer.is_global_zero:
            result["per_example"] = write_per_example(record, self.section, stage, outcomes)
            table = corruption_table(result)
            rows = [
                [c, int(s), v["acc"], *v["ci"]] for c, by in accuracy.items() for s, v in by.items()
            ]
            md = write_outputs(
                trainer,
                record,
                self.section,
                stage,
                result,
                table,
                rows,
                ["corruption", "severity", "acc", "ci_low", "ci_high"],
            )
            rank_zero_info(f"\n{table}\n(written to {md})")
        log_plot(trainer, self.section, stage, result, corruption_heatmap)
        return result

    def _score(
        self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, limit: int
    ) -> tuple[Tensor, Tensor, int]:
        """This rank's every ``world_size``-th of the first ``limit`` images: index, correct, n."""
        loader, n = rank_shard(dataset, limit, trainer, self.batch_size)
        indices, flags = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.bool)]
        with eval_mode(pl_module), torch.no_grad():
            for x, y, index in loader:
                pred = pl_module(x.to(pl_module.device)).argmax(dim=1).cpu()
                indices.append(index)
                flags.append(pred == y)
        return torch.cat(indices), torch.cat(flags), n

    def _reference(self) -> dict[str, Any] | None:
        if self.reference is None:
            return None
        if self.reference == "alexnet":
            return alexnet_reference()
        return reference_from_record(
            json.loads(Path(self.reference).read_text()), section=self.section
        )
