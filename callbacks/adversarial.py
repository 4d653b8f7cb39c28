"""Adversarial evaluation as a callback: a suite of attacks over a grid of epsilons."""

from __future__ import annotations

import time
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset

from callbacks.adversarial_examples import AdversarialExamples, adversarial_file_name
from callbacks.evaluation import (
    ShardOutcomes,
    StagedEvaluation,
    check_gradients_enabled,
    check_stages,
    eval_dataset,
    gather_outcomes,
    log_plot,
    log_scalars,
    proportion,
    rank_shard,
    reduce_counts,
    write_outputs,
    write_per_example,
)
from callbacks.example_ids import read_example_ids
from callbacks.results import record_path
from robust_vit.attacks import (
    CLEAN,
    FGSM,
    WORST,
    Attack,
    attack_suite,
    beaten_by_fgsm,
    masking_warnings,
    randomized_forward,
    zero_input_gradient,
)
from robust_vit.errors import ConfigError
from robust_vit.outcomes import attack_column
from robust_vit.plots import accuracy_vs_epsilon
from robust_vit.ranges import PositiveInt, check_ranges
from robust_vit.tables import adversarial_table
from robust_vit.threat import PixelRadius, Threat, radius_text

Stage = Literal["fit", "test"]
SANITY = "sanity"


CountKey = tuple[str | Threat, ...]


def add(counts: dict[CountKey, Tensor], key: CountKey, flags: Tensor) -> None:
    """Add the number of true ``flags`` to ``counts[key]``."""
    counts[key] = counts.get(key, torch.zeros(())) + flags.sum().cpu()


class AdversarialEval(StagedEvaluation):
    """Robust accuracy under a suite of attacks: each attack, the per-example worst case, 95% CIs.

    Runs at the end of testing, and (with ``"fit"`` in ``stages``) at the end of every
    ``every_n_epochs``-th validation, on the first ``num_examples`` examples of that loader. Each
    rank attacks every ``world_size``-th example and the robust counts are summed, so results do
    not depend on the number of ranks. Needs ``trainer.inference_mode: false``.

    Before it attacks, it runs each rank's first batch twice: a model whose eval-mode logits
    differ between the passes (a randomised defence) is refused unless every attack averages
    its gradients over random draws (``eot`` > 1, or AutoAttack's ``version: rand``). The
    accuracies of such a model are one draw per example.

    Beside the record it writes ``<section>_<stage>.outcomes.safetensors``: per evaluated example,
    its dataset index and a correct bit for ``clean``, each ``<attack>@<radius>`` and each
    ``worst_case@<radius>`` (see :mod:`robust_vit.outcomes`); the section's ``per_example``
    names it with its sha256.

    Args:
        attacks: the suite (``robust_vit.attacks.PGD`` etc., as ``class_path`` entries).
        epsilons: radii to run every attack at (pixel units, ``8/255`` or a number); None: each
            attack's own ``eps``.
        num_examples: examples to evaluate (the first ones of the loader's dataset).
        seed: seeds each example's random starts (with its dataset index).
        every_n_epochs: during fit, evaluate every this many epochs.
        stages: ``test`` and/or ``fit``.
        batch_size: examples attacked at once per rank.
        section: name of the record section, of the markdown file and of the logged keys.
        example_ids: a file naming the examples to evaluate, one per line, a dataset index or
            an image path under an image folder's root (:mod:`callbacks.example_ids`; a
            protocol's fixed subset); None: the dataset's first examples. The file's first
            ``num_examples`` are evaluated, in dataset order.
        save_adversarial: also write every attack's adversarial examples as float tensors,
            with their indices, labels and per-example results
            (:mod:`callbacks.adversarial_examples`; the section's ``adversarial_examples``
            names the file).
    """

    @check_ranges("adversarial")
    def __init__(
        self,
        attacks: list[Attack],
        epsilons: list[PixelRadius] | None = None,
        num_examples: PositiveInt = 1000,
        seed: int = 0,
        every_n_epochs: PositiveInt = 1,
        stages: list[Stage] = ["test"],  # noqa: B006 (jsonargparse needs a literal)
        batch_size: PositiveInt = 256,
        section: str = "adversarial",
        example_ids: str | None = None,
        save_adversarial: bool = False,
    ) -> None:
        check_stages("adversarial", list(stages))
        if not attacks:
            raise ConfigError("adversarial.attacks", "needs at least one attack.")
        if epsilons is not None and not epsilons:
            raise ConfigError(
                "adversarial.epsilons",
                "must list at least one radius, or be null to run each attack at its own eps.",
            )
        self.suites = self._suites(attacks, epsilons)
        self.columns = self._columns(self.suites)
        self.num_examples, self.seed = num_examples, seed
        self.every_n_epochs, self.stages = every_n_epochs, list(stages)
        self.batch_size, self.section = batch_size, section
        self.example_ids, self.save_adversarial = example_ids, save_adversarial
        self._example_cache: dict[str, list[int]] = {}
        self._randomness_checked: set[str] = set()

    @staticmethod
    def _suites(attacks: list[Attack], epsilons: list[float] | None) -> dict[Threat, list[Attack]]:
        """Attacks grouped by threat model, in the order given."""
        suites: dict[Threat, list[Attack]] = {}
        for eps in epsilons if epsilons is not None else [None]:
            for attack in attacks:
                a = attack.with_eps(eps) if eps is not None else attack
                suites.setdefault(Threat(a.norm, a.eps), []).append(a)
        return suites

    @staticmethod
    def _columns(suites: dict[Threat, list[Attack]]) -> list[str]:
        """The per-example file's columns; refuse two outcomes that would share one."""
        names = [
            (name, threat)
            for threat, suite in suites.items()
            for name in [*(a.name for a in suite), WORST]
        ]
        columns = [attack_column(name, threat) for name, threat in names]
        clashes = sorted({c for c in columns if columns.count(c) > 1})
        if clashes:
            raise ConfigError(
                "adversarial.epsilons",
                f"two threats of different norms share a radius, so {clashes} would name two "
                "outcomes; evaluate each norm in its own AdversarialEval (its own `section`).",
            )
        return [CLEAN, *columns]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Fail before any compute if the stage would run the attacks without gradients."""
        if stage in self.stages:
            check_gradients_enabled(trainer, stage, "AdversarialEval")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Read ``example_ids`` and check the model's randomness before the test loop."""
        dataset = eval_dataset(trainer, "test")
        if "test" in self.stages and dataset is not None:
            self._examples(dataset, "test")
            self._check_randomness(trainer, pl_module, dataset, "test")

    def _check_randomness(
        self, trainer: L.Trainer, pl_module: L.LightningModule, dataset: Dataset, stage: str
    ) -> None:
        """Refuse attacks without EOT on a model whose eval-mode outputs are random.

        Two forward passes of each rank's first batch; any rank's differing logits count.
        """
        if stage in self._randomness_checked:
            return
        self._randomness_checked.add(stage)
        examples = self._examples(dataset, stage)
        loader, _ = rank_shard(dataset, self.num_examples, trainer, self.batch_size, examples)
        batch = next(iter(loader), None)
        flagged = batch is not None and bool(
            randomized_forward(pl_module, batch[0].to(pl_module.device)).any()
        )
        randomized = trainer.strategy.reduce_boolean_decision(flagged, all=False)
        deterministic = sorted(
            {a.name for suite in self.suites.values() for a in suite if not a.averages_randomness}
        )
        if randomized and deterministic:
            raise ConfigError(
                f"trainer.callbacks.AdversarialEval.attacks ({self.section})",
                "the model's eval-mode outputs differ between two identical forward passes (a "
                f"randomised defence), and {', '.join(deterministic)} take the gradient of one "
                "random draw, which overstates its robustness. Average over draws: set `eot: 20` "
                "on FGSM, PGD and APGD, or use AutoAttack with `version: rand`.",
            )

    def _examples(self, dataset: Dataset, stage: str) -> list[int] | None:
        """The dataset indices ``example_ids`` names (read once per stage), or None."""
        if self.example_ids is None:
            return None
        if stage not in self._example_cache:
            field = f"trainer.callbacks.AdversarialEval.example_ids ({self.section})"
            chosen = read_example_ids(self.example_ids, dataset, field)[: self.num_examples]
            self._example_cache[stage] = sorted(chosen)  # per-example files go by index
        return self._example_cache[stage]

    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> dict[str, Any]:
        """Attack this rank's shard, sum the counts over ranks, log and record the result."""
        dataset = eval_dataset(trainer, stage)
        if dataset is None:
            raise ConfigError("data", f"AdversarialEval needs a {stage} dataset; none was found.")
        self._check_randomness(trainer, pl_module, dataset, stage)
        start = time.perf_counter()
        examples = self._examples(dataset, stage)
        loader, n = rank_shard(dataset, self.num_examples, trainer, self.batch_size, examples)
        counts: dict[CountKey, Tensor] = {}
        shard = ShardOutcomes(self.columns)
        kept = AdversarialExamples() if self.save_adversarial else None
        for x, y, index in loader:
            shard.add_index(index)
            if kept is not None:
                kept.add_batch(index, y)
            x, y = x.to(pl_module.device), y.to(pl_module.device)
            seeds = index + self.seed * 2**31
            add(counts, (SANITY, "randomized_forward"), randomized_forward(pl_module, x))
            add(counts, (SANITY, "zero_input_gradient"), zero_input_gradient(pl_module, x, y))
            for i, (threat, suite) in enumerate(self.suites.items()):
                flags, adversarial = attack_suite(pl_module, x, y, suite, seeds)
                if kept is not None:
                    for a in suite:
                        kept.add(attack_column(a.name, threat), adversarial[a.name], flags[a.name])
                for name, f in flags.items():
                    if name == CLEAN and i > 0:
                        continue
                    add(counts, (CLEAN,) if name == CLEAN else (name, threat), f)
                    shard.add(CLEAN if name == CLEAN else attack_column(name, threat), f)
                fgsm = [a.name for a in suite if isinstance(a, FGSM)]
                attacked = {a.name: flags[a.name] for a in suite}
                if fgsm:
                    for name, f in beaten_by_fgsm(attacked, fgsm).items():
                        add(counts, (SANITY, "beaten_by_fgsm", name, threat), f)
        totals = reduce_counts(trainer, counts)
        outcomes = gather_outcomes(trainer, shard.outcomes())
        robust = self._robust(totals, n)
        result = self._result(totals, robust, n, time.perf_counter() - start)
        prefix = "test" if stage == "test" else "val"
        scalars = {f"{prefix}/{self.section}/{CLEAN}": result["clean"]["acc"]}
        for name, by_threat in robust.items():
            scalars.update(
                {
                    f"{prefix}/{self.section}/{name}@{radius_text(t.eps)}": v["acc"]
                    for t, v in by_threat.items()
                }
            )
        log_scalars(pl_module, scalars)
        record = record_path(trainer)
        if kept is not None:
            name = adversarial_file_name(
                self.section, stage, trainer.global_rank, trainer.world_size
            )
            kept.write(record.parent / name)
            result["adversarial_examples"] = [
                adversarial_file_name(self.section, stage, r, trainer.world_size)
                for r in range(trainer.world_size)
            ]
        if trainer.is_global_zero:
            result["per_example"] = write_per_example(record, self.section, stage, outcomes)
            table = adversarial_table(result)
            for warning in result["sanity"]["warnings"]:
                rank_zero_warn(f"AdversarialEval: {warning}")
            rows = [
                [name, t, v["acc"], *v["ci"]]
                for name, by_t in {**result["attacks"], WORST: result["worst_case"]}.items()
                for t, v in by_t.items()
            ]
            md = write_outputs(
                trainer,
                record,
                self.section,
                stage,
                result,
                table,
                rows,
                ["attack", "threat", "acc", "ci_low", "ci_high"],
            )
            rank_zero_info(f"\n{table}\n(written to {md})")
        log_plot(trainer, self.section, stage, result, accuracy_vs_epsilon)
        return result

    def _robust(
        self, totals: dict[CountKey, int], n: int
    ) -> dict[str, dict[Threat, dict[str, Any]]]:
        """Robust accuracy per attack name (the worst case last) and threat, in suite order."""
        robust: dict[str, dict[Threat, dict[str, Any]]] = {
            name: {} for suite in self.suites.values() for name in (a.name for a in suite)
        }
        robust[WORST] = {}
        for key, count in totals.items():
            if key[0] != SANITY and key != (CLEAN,):
                name, threat = key
                robust[str(name)][threat] = proportion(count, n)  # type: ignore[index]
        order = list(self.suites)
        return {
            name: dict(sorted(by_threat.items(), key=lambda kv: order.index(kv[0])))
            for name, by_threat in robust.items()
        }

    def _result(
        self,
        totals: dict[CountKey, int],
        robust: dict[str, dict[Threat, dict[str, Any]]],
        n: int,
        seconds: float,
    ) -> dict[str, Any]:
        """The record's section: accuracies keyed by threat key (``linf@8/255``), sanity checks."""
        sanity: dict[str, Any] = {"beaten_by_fgsm": {}}
        for key, count in totals.items():
            if key[0] == SANITY:
                _, check, *where = key
                if where:
                    sanity[str(check)].setdefault(where[0], {})[str(where[1])] = count
                else:
                    sanity[str(check)] = {"examples": count, "n": n}
        keyed = {
            name: {threat.key: v for threat, v in by_threat.items()}
            for name, by_threat in robust.items()
        }
        worst = keyed.pop(WORST)
        fgsm = list(
            dict.fromkeys(
                a.name for suite in self.suites.values() for a in suite if isinstance(a, FGSM)
            )
        )
        averaged = all(a.averages_randomness for suite in self.suites.values() for a in suite)
        sanity["warnings"] = masking_warnings(sanity, keyed, fgsm, averaged)
        return {
            "n": n,
            "seed": self.seed,
            "seconds": round(seconds, 2),
            "clean": proportion(totals[(CLEAN,)], n),
            "attacks": keyed,
            "worst_case": worst,
            "sanity": sanity,
        }
