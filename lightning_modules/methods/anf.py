"""ANF: approximate nullspace augmented finetuning (Liu, Singh, Li, Wang, CPAL 2025)."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_modules.logger_media import log_png
from lightning_modules.methods.base import Batch, FinetuneMethod, train_loader
from robust_vit.anf import (
    SynthesisResult,
    apply_noise,
    check_supports_token_noise,
    noise_shape,
    random_noise,
    synthesize_noise,
    token_rms,
)
from robust_vit.errors import ConfigError
from robust_vit.plots import anf_rounds
from robust_vit.ranges import (
    NonNegativeFloat,
    PositiveAtMost2,
    PositiveAtMost10,
    PositiveFloat,
    PositiveInt,
    check_ranges,
)
from robust_vit.samplers import RoundSampler

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier

FIELD = "model.method.init_args"
STATS = (
    "noise_norm",
    "synth_steps",
    "synth_reached",
    "synth_criterion",
    "synth_agreement",
    "token_rms",
    "synth_init_range",
    "synth_initial_criterion",
)


class ANF(FinetuneMethod):
    """Rounds of (synthesise a universal approximate-nullspace noise; train on clean + noisy).

    Every ``steps_per_round`` optimizer steps (``rounds`` times) a fresh noise is synthesised
    with the current model (frozen, eval mode) by :func:`robust_vit.anf.synthesize_noise` on
    training batches from a loader of its own, shuffled by ``(seed, round)`` (every round
    searches on fresh batches; the training epoch is never disturbed); in between the loss is
    ``clean_weight * CE(f(x), y) + loss_weight * CE(f(x; noise), y)``
    plus ``consistency_weight`` times the mean squared logit change. After the last round the last
    noise stays in use. The noise and the round counter are buffers, so checkpoints hold them.
    Under DDP every rank draws the same initial noise (seeded), averages the noise gradients and
    stops on the rank-averaged criterion.

    Args:
        eps: stop the synthesis once the batch mean of ``sum_k (p_clean - p_noisy)^2`` is below it.
        init_lim: the learned noise starts Uniform(-init_lim, init_lim).
        noise_lr: AdamW learning rate of the noise.
        budget_fraction: synthesis budget as a fraction of one epoch's training batches.
        max_synthesis_steps: fixed synthesis budget in steps (overrides ``budget_fraction``).
        rounds: number of noises synthesised.
        steps_per_round: optimizer steps trained with each noise.
        loss_weight: lambda, the weight of the noisy cross-entropy.
        clean_weight: weight of the clean cross-entropy (1: the paper). 0 leaves the noisy term
            alone, to add to another method's loss (DAT + NS: ``Composite`` of PGD-AT and ANF).
        consistency_weight: weight of ``mean ||f(x; noise) - f(x)||^2`` (0 = off, the paper).
        noise: ``learned`` (ANF) or ``random`` (the control: N(0, 1) shrunk by 0.8 until the eps
            test passes).
        space: ``token`` (after ``patch_embed``, the paper) or ``image`` (added to the [0, 1] input,
            unclamped).
        seed: seed of the noise initialisation (the round index is added) and, with the
            round, of the synthesis batches' order; equal on every rank. None (the default)
            takes the run's seed (``seed_everything``, 0 when none is set), so a sweep over
            seeds varies the noise too.
        noise_units: what ``init_lim`` and ``noise_lr`` (and the random control's N(0, 1)) are
            measured in: ``absolute`` (the authors' code, calibrated on ImageNet ViTs) or
            ``token_rms``, the RMS of the clean patch tokens measured at each synthesis (the
            noise is optimised as ``rms * u``), which carries the scale over to any ViT
            (token space only).
        start_criterion: fit each round's start to the current model: the learned noise's
            uniform start is halved (at most 8 times) until its criterion on the round's first
            batch is at most this (None, the paper: ``init_lim`` as given). Tried as a rule that
            reads the model in place of a hand-tuned ``init_lim``: no one bound gave a learned
            noise on both the CPU ViT and the real ViT-S/14 (docs/real_vit.md).
        warm_start: each round's synthesis starts from the previous round's noise instead of a
            fresh uniform draw (the first round draws); the start fit still applies to it.

    Each round's token RMS, initial range, steps, criterion and whether eps was reached are
    logged (``train/<stat>``) and listed, with the run's reach rate, by :meth:`summary`; after
    every synthesis the rounds so far (noise norm, eps reached, agreement) are drawn as
    ``<log_dir>/anf_rounds.png`` and logged as the image ``anf/rounds``.
    """

    noise: Tensor
    current_round: Tensor
    stats: Tensor

    @check_ranges(FIELD)
    def __init__(
        self,
        eps: PositiveAtMost2 = 0.03,
        init_lim: PositiveFloat = 3.0,
        noise_lr: PositiveFloat = 0.1,
        budget_fraction: PositiveAtMost10 = 0.3,
        max_synthesis_steps: PositiveInt | None = None,
        rounds: PositiveInt = 20,
        steps_per_round: PositiveInt = 40,
        loss_weight: NonNegativeFloat = 1.0,
        clean_weight: NonNegativeFloat = 1.0,
        consistency_weight: NonNegativeFloat = 0.0,
        noise: Literal["learned", "random"] = "learned",
        space: Literal["token", "image"] = "token",
        seed: int | None = None,
        noise_units: Literal["absolute", "token_rms"] = "absolute",
        start_criterion: PositiveFloat | None = None,
        warm_start: bool = False,
    ) -> None:
        super().__init__()
        self.eps, self.init_lim, self.noise_lr = eps, init_lim, noise_lr
        self.budget_fraction, self.max_synthesis_steps = budget_fraction, max_synthesis_steps
        self.rounds, self.steps_per_round = rounds, steps_per_round
        self.loss_weight, self.consistency_weight = loss_weight, consistency_weight
        self.clean_weight = clean_weight
        self.noise_kind, self.space, self.seed = noise, space, seed
        self.noise_units, self.start_criterion = noise_units, start_criterion
        self.warm_start = warm_start
        self.history: list[dict[str, float]] = []
        self.register_buffer("noise", torch.zeros(0))
        self.register_buffer("current_round", torch.tensor(-1))
        self.register_buffer("stats", torch.zeros(len(STATS)))

    def check_fields(self) -> None:
        """Token-RMS units need the noise in token space; start options need a learned noise."""
        start_options = {
            "start_criterion": self.start_criterion is not None,
            "warm_start": self.warm_start,
        }
        for field, given in start_options.items():
            if given and self.noise_kind == "random":
                raise ConfigError(
                    field,
                    "shapes the learned noise's start; the random control draws afresh and "
                    f"shrinks until the eps test passes. Remove {field}, or set noise: learned.",
                )
        if self.noise_units == "token_rms" and self.space != "token":
            raise ConfigError(
                "noise_units",
                "token_rms measures the patch tokens, so "
                "it needs space: token; use noise_units: absolute in image space.",
            )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load the noise with the checkpoint's shape (the buffer is empty before a synthesis)."""
        saved = state_dict.get(f"{prefix}noise")
        if saved is not None:
            self.noise = torch.empty_like(saved, device=self.noise.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def get_extra_state(self) -> dict[str, Any]:
        """The rounds so far (see :meth:`summary`)."""
        return {"history": [dict(entry) for entry in self.history]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the rounds of the checkpoint."""
        self.history = [dict(entry) for entry in state["history"]]

    def summary(self) -> dict[str, Any]:
        """The units, every synthesis round's statistics and the share that reached eps."""
        reached = [entry["synth_reached"] for entry in self.history]
        return {
            "noise_units": self.noise_units,
            "eps": self.eps,
            "rounds": self.history,
            "reach_rate": sum(reached) / len(reached) if reached else None,
        }

    def on_fit_start(self, module: ViTClassifier) -> None:
        """Check that the model has a patch embedding and that the run covers every round."""
        if self.space == "token":
            check_supports_token_noise(module.vit)
        planned = self.rounds * self.steps_per_round
        total = module.trainer.estimated_stepping_batches
        if math.isfinite(total) and int(total) != planned:
            rank_zero_warn(
                f"ANF plans {self.rounds} rounds x {self.steps_per_round} steps = {planned} "
                f"optimizer steps but the trainer runs {int(total)}; set trainer.max_steps="
                f"{planned} to match (after the last round the last noise stays in use)."
            )

    def synthesis_budget(self, module: ViTClassifier) -> int:
        """Synthesis steps: the fixed budget, or ``budget_fraction`` of one epoch's batches."""
        if self.max_synthesis_steps is not None:
            return self.max_synthesis_steps
        batches = module.trainer.num_training_batches
        return max(1, math.ceil(self.budget_fraction * batches)) if math.isfinite(batches) else 1

    def run_seed(self) -> int:
        """``seed``, or the run's seed that ``seed_everything`` exported (0 without one)."""
        if self.seed is not None:
            return self.seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _images(self, module: ViTClassifier, round_index: int) -> Iterator[Tensor]:
        """Training images on the model's device, from a loader of the synthesis's own.

        Its order is fixed by ``(seed, round)`` (:class:`~robust_vit.samplers.RoundSampler`),
        so every round searches on fresh batches, every rank on its share of the same order, and
        the training loader (whose workers may persist) is never touched.
        """
        trainer = module.trainer
        train = train_loader(module)
        sampler = RoundSampler(
            train.dataset, self.run_seed(), round_index, trainer.world_size, trainer.global_rank
        )
        loader = DataLoader(
            train.dataset,
            batch_size=train.batch_size,
            sampler=sampler,
            num_workers=train.num_workers,
            collate_fn=train.collate_fn,
            pin_memory=train.pin_memory,
        )
        for x, _ in loader:
            yield x.to(module.device, non_blocking=True)

    def synthesize(
        self, module: ViTClassifier, x: Tensor, round_index: int
    ) -> tuple[SynthesisResult, float]:
        """A new noise for ``round_index`` with the current model, and the clean tokens' RMS."""
        shape = noise_shape(module.model, x, self.space)
        generator = torch.Generator().manual_seed(self.run_seed() + round_index)
        images = self._images(module, round_index)
        first = next(images)
        rms = token_rms(module.model, first) if self.space == "token" else math.nan
        scale = rms if self.noise_units == "token_rms" else 1.0
        kwargs: dict[str, Any] = {
            "eps": self.eps,
            "max_steps": self.synthesis_budget(module),
            "space": self.space,
            "generator": generator,
            "scale": scale,
        }
        images = itertools.chain([first], images)
        if self.noise_kind == "random":
            return random_noise(module.model, images, shape, **kwargs), rms
        warm = self.warm_start and self.noise.numel() > 0
        return synthesize_noise(
            module.model,
            images,
            shape,
            init_lim=self.init_lim,
            lr=self.noise_lr,
            start_criterion=self.start_criterion,
            start=self.noise / scale if warm else None,
            **kwargs,
        ), rms

    def round_stats(self, result: SynthesisResult, rms: float) -> dict[str, float]:
        """A synthesis's statistics by ``STATS`` name (``rms``: the clean tokens' RMS).

        ``synth_init_range`` is the half-width of the learned noise's uniform start (after the
        start fit of ``start_criterion``), or the random control's standard deviation, in
        absolute units; ``synth_initial_criterion`` is the learned start's criterion (NaN for
        the random control).
        """
        init_range = result.scale * (result.init_lim if self.noise_kind == "learned" else 1.0)
        values = [
            result.norm,
            result.steps,
            float(result.reached),
            result.criterion,
            result.agreement,
            rms,
            init_range,
            result.initial_criterion,
        ]
        return dict(zip(STATS, values, strict=True))

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """Synthesise at a round boundary, then CE(clean) + lambda CE(noisy) (+ consistency)."""
        x, y = batch
        round_index = min(module.trainer.global_step // self.steps_per_round, self.rounds - 1)
        if round_index > int(self.current_round) or self.noise.numel() == 0:
            result, rms = self.synthesize(module, x, round_index)
            self.noise = result.noise.to(self.noise.dtype)
            self.current_round.fill_(round_index)
            stats = self.round_stats(result, rms)
            self.stats.copy_(torch.tensor(list(stats.values())))
            self.history.append({"round": round_index, "global_step": module.global_step, **stats})
            log_png(
                module.trainer,
                "anf_rounds.png",
                "anf/rounds",
                partial(
                    anf_rounds,
                    self.history,
                    title=f"ANF rounds ({self.noise_kind} noise, {self.space} space)",
                ),
            )
        logits = module(x)
        noisy = apply_noise(module.model, x, self.noise, self.space)
        loss = self.clean_weight * F.cross_entropy(logits, y) + self.loss_weight * F.cross_entropy(
            noisy, y
        )
        if self.consistency_weight > 0:
            loss = loss + self.consistency_weight * (noisy - logits).pow(2).sum(-1).mean()
        extras = dict(zip(STATS, self.stats, strict=True))
        return {"loss": loss, "logits": logits, "round": self.current_round.float(), **extras}
