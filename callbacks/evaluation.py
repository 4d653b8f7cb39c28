"""Shared by the evaluation callbacks: checks, each rank's examples, exact sums, outputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lightning_modules.classifier import ViTClassifier
from lightning_modules.logger_media import log_png, log_table
from robust_vit.attacks import wilson_interval
from robust_vit.errors import ConfigError
from robust_vit.outcomes import Outcomes, merge_shards, outcomes_file_name, write_outcomes
from robust_vit.records import update_record, write_text_atomic
from robust_vit.threat import Threat

STAGES = ("fit", "test")


def check_stages(field: str, stages: list[str]) -> None:
    """Fail on stages other than fit/test, and on none."""
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ConfigError(
            field + ".stages", f"must be a non-empty subset of {STAGES}, got {stages}."
        )


def check_gradients_enabled(trainer: L.Trainer, stage: str, field: str) -> None:
    """Attacks need gradients: refuse evaluation loops that run under ``torch.inference_mode``."""
    loop = trainer.test_loop if stage == "test" else trainer.fit_loop.epoch_loop.val_loop
    if loop.inference_mode:
        raise ConfigError(
            "trainer.inference_mode",
            f"is true, so {field} would attack without gradients during {stage}. Set "
            "`trainer.inference_mode: false` (the experiments/eval/*.yaml files do).",
        )


def classifier(pl_module: L.LightningModule) -> ViTClassifier:
    """The module as the :class:`ViTClassifier` the callbacks that read its model need."""
    if not isinstance(pl_module, ViTClassifier):
        raise TypeError(f"needs a ViTClassifier, got {type(pl_module).__name__}")
    return pl_module


def eval_dataset(trainer: L.Trainer, stage: str) -> Dataset | None:
    """The dataset of the stage's evaluation loader (test set for test, validation set in fit)."""
    return loader_dataset(trainer.test_dataloaders if stage == "test" else trainer.val_dataloaders)


def loader_dataset(loaders: object) -> Dataset | None:
    """The dataset of a loader, or of the first of a list of loaders (None if there is none)."""
    if isinstance(loaders, list | tuple):
        loaders = loaders[0] if loaders else None
    return loaders.dataset if isinstance(loaders, DataLoader) else None


def rank_shard(
    dataset: Dataset,
    num_examples: int,
    trainer: L.Trainer,
    batch_size: int,
    examples: Sequence[int] | None = None,
) -> tuple[DataLoader, int]:
    """This rank's share (every ``world_size``-th) of the first ``num_examples`` examples.

    The examples are the dataset's first ones, or the first of ``examples`` (dataset indices)
    where given. No padding or duplicates, so the per-rank counts sum exactly to the
    single-process counts. Batches yield ``(x, y, index)`` with the dataset index, from which
    per-example seeds derive.
    """
    chosen = range(len(dataset)) if examples is None else examples  # type: ignore[arg-type]
    n = min(num_examples, len(chosen))
    indices = list(chosen[trainer.global_rank : n : trainer.world_size])
    subset = Subset(_Indexed(dataset), indices)
    return DataLoader(subset, batch_size=batch_size, shuffle=False), n


class _Indexed(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        x, y = self.dataset[index]
        return x, torch.as_tensor(y), index


class ShardOutcomes:
    """This rank's per-example outcomes, collected batch by batch as the counts are.

    Args:
        columns: the outcomes every rank holds (so that a rank with no examples still has them).
    """

    def __init__(self, columns: list[str]) -> None:
        self._index: list[Tensor] = []
        self._correct: dict[str, list[Tensor]] = {name: [] for name in columns}

    def add_index(self, index: Tensor) -> None:
        """Note the dataset indices of the next batch."""
        self._index.append(index.detach().cpu().long())

    def add(self, column: str, correct: Tensor) -> None:
        """Note the batch's correct flags under ``column``."""
        self._correct[column].append(correct.detach().cpu().bool())

    def outcomes(self) -> Outcomes:
        """The collected shard (ValueError if a column missed a batch)."""
        index = torch.cat(self._index) if self._index else torch.empty(0, dtype=torch.long)
        return Outcomes(
            index,
            {
                name: torch.cat(parts) if parts else torch.empty(0, dtype=torch.bool)
                for name, parts in self._correct.items()
            },
        )


def gather_outcomes(trainer: L.Trainer, shard: Outcomes) -> Outcomes:
    """Every rank's shard, merged in dataset-index order. Call it on every rank (a collective).

    The result does not depend on the number of ranks or the batch size.
    """
    if trainer.world_size == 1:
        return merge_shards([shard])
    shards: list[Outcomes | None] = [None] * trainer.world_size
    torch.distributed.all_gather_object(shards, shard)
    return merge_shards([s for s in shards if s is not None])


def write_per_example(
    record: Path, section: str, stage: str, outcomes: Outcomes, part: str | None = None
) -> dict[str, Any]:
    """Write ``outcomes`` beside the record; return the record's ``per_example`` entry.

    Rank zero only. The entry names the file (relative to the record's folder), its sha256 and n.
    """
    name = outcomes_file_name(section, stage, part)
    digest = write_outcomes(record.parent / name, outcomes)
    return {"file": name, "sha256": digest, "n": outcomes.n}


Key = TypeVar("Key", str, tuple[str, ...], tuple[str | Threat, ...])


def reduce_counts(trainer: L.Trainer, counts: dict[Key, Tensor]) -> dict[Key, int]:
    """Sum integer counts over ranks (exact: every example lives on exactly one rank).

    Keys are names or tuples of names and threats; every rank must hold the same keys.
    """
    keys = sorted(counts)
    stacked = torch.stack([counts[k].to(trainer.strategy.root_device, torch.float64) for k in keys])
    total = trainer.strategy.reduce(stacked, reduce_op="sum") if trainer.world_size > 1 else stacked
    return {k: round(float(v)) for k, v in zip(keys, total.tolist(), strict=True)}


def proportion(successes: int, n: int) -> dict[str, Any]:
    """Accuracy, its count, and the 95% Wilson interval."""
    return {
        "acc": successes / n if n else float("nan"),
        "correct": successes,
        "n": n,
        "ci": list(wilson_interval(successes, n)),
    }


def log_scalars(pl_module: L.LightningModule, values: dict[str, float]) -> None:
    """Log already-reduced scalars to every logger (the module's ``log`` keeps Lightning's keys)."""
    for key, value in values.items():
        pl_module.log(key, value, rank_zero_only=True)


def write_outputs(
    trainer: L.Trainer,
    path: Path,
    section: str,
    stage: str,
    result: dict[str, Any],
    table: str,
    rows: list[list[Any]],
    columns: list[str],
) -> Path:
    """Merge ``result`` into the record at ``path``, save the markdown table, send loggers a table.

    Rank zero only; ``path`` comes from :func:`callbacks.results.record_path`, which every rank
    must call (it is a collective under DDP).
    """
    update_record(path, section, {stage: {**result, "table": table}})
    md = path.parent / f"{section}_{stage}.md"
    write_text_atomic(md, table + "\n")
    log_table(trainer, f"{stage}/{section}", columns, rows)
    return md


Plot = Callable[[dict[str, Any], Path, str], Path]


def log_plot(
    trainer: L.Trainer, section: str, stage: str, result: dict[str, Any], plot: Plot
) -> Path | None:
    """Draw ``result`` as ``<log_dir>/<section>_<stage>.png``; log it as ``<stage>/<section>/plot``.

    Call it on every rank (see :func:`lightning_modules.logger_media.log_png`).
    """
    title = f"{section}, {stage}" + (f" (epoch {trainer.current_epoch})" if stage == "fit" else "")
    return log_png(
        trainer,
        f"{section}_{stage}.png",
        f"{stage}/{section}/plot",
        lambda path: plot(result, path, title),
    )


class StagedEvaluation(L.Callback, ABC):
    """An evaluation that runs after testing and/or every ``every_n_epochs`` epochs of fit.

    Subclasses set ``stages`` (``"test"``, ``"fit"``) and ``every_n_epochs`` and implement
    :meth:`evaluate`.
    """

    stages: list[str]
    every_n_epochs: int

    @abstractmethod
    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        """Score the model for ``stage``, record and log the result."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate after testing."""
        if "test" in self.stages:
            self.evaluate(trainer, pl_module, "test")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Evaluate on validation data every ``every_n_epochs`` epochs of fit."""
        due = (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if (
            "fit" in self.stages
            and not trainer.sanity_checking
            and trainer.state.fn == "fit"
            and due
        ):
            device = pl_module.device
            cuda = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # training's RNG stream stays untouched
                self.evaluate(trainer, pl_module, "fit")
