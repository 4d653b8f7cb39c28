"""SAFER (Gopal et al. 2025): SAM on the sharpest layers only, on PGD examples.

Every candidate layer is scored on a fixed subset of the training set (the pure function
:func:`robust_vit.sharpness.layer_sharpness`), the sharpest are selected, and only they are
trained; the selection is re-scored every ``reselect_every_n_epochs`` epochs. With
``score_file`` the scores are read from a file instead (the oracle arm: layers ranked by their
measured rollback gain, ``make rollback``).

Freezing never touches ``requires_grad`` (DDP cannot follow that after it wrapped the model):
the optimizer holds only the selected parameters, so the rest get no update and no state.
Every backward asks autograd for the selected parameters' gradients only (``inputs=``), so the
frozen layers' weight gradients are never computed. Those backwards bypass DDP's gradient hooks;
the gradient the step uses is averaged over the ranks by hand.
The selection travels in the checkpoint (``get_extra_state``) and is restored before the
optimizer is rebuilt on resume.

With ``adapter: lora | dora`` the selected layers get ``peft`` adapters and only the adapters are
trained (SAM perturbs and steps them alone). At each scoring the adapters are merged into their
layers, the plain model is scored, and fresh adapters go on the new selection, so the weights
always hold everything learned so far. A checkpoint holds the adapters; on load they are put back
on the layers the checkpoint adapted before its weights are read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.optim import Optimizer

from lightning_modules.layer_logging import log_layer_scores
from lightning_modules.methods.adversarial import FIELD, AdversarialMethod
from lightning_modules.methods.base import Batch, FinetuneMethod, train_loader
from lightning_modules.optim import weight_decay_groups
from robust_vit.adapters import (
    AdapterConfig,
    adapted_module_names,
    adapter_parameter_names,
    check_available,
    has_adapters,
    inject_adapters,
    merge_adapters,
    merged_copy,
)
from robust_vit.attacks.pgd import pgd
from robust_vit.distributed import average_gradients
from robust_vit.errors import ConfigError
from robust_vit.layers import Granularity, Layer, candidate_layers
from robust_vit.ranges import (
    LeftOpenUnitInterval,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    RightOpenUnitInterval,
    check_ranges,
    fields_under,
)
from robust_vit.sam import SAM
from robust_vit.sharpness import (
    Radius,
    ScoreVariant,
    Selection,
    fixed_batches,
    layer_sharpness,
    num_selected,
    select_layers,
)

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier


class LayerOptimizer(str, Enum):
    """How the selected layers are trained."""

    SAM = "sam"
    BASE = "base"


class SAFER(AdversarialMethod):
    """Sharpness-aware layer-selective adversarial finetuning (manual optimization).

    Each step makes PGD examples once at the unperturbed weights, then (``optimizer: sam``)
    backward at w (the rank's own gradient), perturbs the selected layers by SAM's e(w), backward
    at w + e (averaged over ranks), restores w exactly, clips the gradient norm, and takes the
    base step. Backwards compute the selected layers' gradients only.

    Args:
        granularity: candidates are single ``linear`` layers or whole ``block``s.
        fraction: share of the candidates selected, k = max(1, round(fraction * candidates)).
        k: explicit number of selected layers (wins over ``fraction``).
        selection: ``sharpest``, ``flattest``, ``random`` or ``all`` (ablations).
        optimizer: ``sam`` (SAM around the injected optimizer) or ``base`` (the injected one).
        rho: SAM radius.
        adaptive: ASAM (use a larger rho, e.g. 0.5-2).
        reselect: re-score and re-select during training (False: select once).
        reselect_every_n_epochs: epochs between scorings.
        score_variant: ``one_step`` SAM ascent, ``first_order`` or ``multi_step``.
        score_rho: radius of the scoring perturbation (None: ``rho``).
        score_radius: ``absolute`` or ``relative`` (rho * ||w_l||).
        score_ascent_steps: steps of the ``multi_step`` variant.
        score_batches: batches in the fixed scoring subset of the training set.
        score_batch_size: their size (None: the training batch size).
        score_seed: picks the scoring subset (and seeds ``random`` selection).
        score_file: a JSON object of every candidate layer's score, used instead of sharpness
            (``selection: sharpest`` takes the highest), e.g. the rollback gains ``make
            rollback`` writes to ``runs/safer_rollback/gains.json`` (the oracle arm). None:
            score sharpness.
        clip_grad_norm: clip the selected layers' gradient norm before the step (None: off).
        adapter: ``lora`` or ``dora`` adapters on the selected layers, trained instead of the
            layers' weights (None: train the weights themselves). Needs the ``peft`` extra.
        adapter_rank: the adapters' rank r.
        adapter_alpha: their scale numerator (the update is scaled by alpha / r).
        adapter_dropout: dropout on the adapters' input.
        loss: the loss the selected layers minimise, as another method (e.g. TRADES or a
            :class:`~lightning_modules.methods.composite.Composite` of PGD-AT and ANF noise); each
            SAM pass calls its ``training_step``, which makes its own attack at the weights of
            that pass. None: cross-entropy on PGD examples made once per step at w.
        **attack: the attack options of
            :class:`~lightning_modules.methods.adversarial.AdversarialMethod` (norm, eps, alpha,
            steps, random_init, eps_warmup_epochs, attack_eval_mode).
    """

    automatic_optimization = False

    @check_ranges(FIELD)
    def __init__(
        self,
        granularity: Literal["linear", "block"] = "linear",
        fraction: LeftOpenUnitInterval = 0.05,
        k: PositiveInt | None = None,
        selection: Literal["sharpest", "flattest", "random", "all"] = "sharpest",
        optimizer: Literal["sam", "base"] = "sam",
        rho: NonNegativeFloat = 0.05,
        adaptive: bool = False,
        reselect: bool = True,
        reselect_every_n_epochs: PositiveInt = 10,
        score_variant: Literal["one_step", "first_order", "multi_step"] = "one_step",
        score_rho: NonNegativeFloat | None = None,
        score_radius: Literal["absolute", "relative"] = "absolute",
        score_ascent_steps: PositiveInt = 3,
        score_batches: PositiveInt = 4,
        score_batch_size: PositiveInt | None = None,
        score_seed: int = 0,
        score_file: str | None = None,
        clip_grad_norm: NonNegativeFloat | None = 1.0,
        adapter: Literal["lora", "dora"] | None = None,
        adapter_rank: PositiveInt = 8,
        adapter_alpha: PositiveFloat = 16.0,
        adapter_dropout: RightOpenUnitInterval = 0.0,
        loss: FinetuneMethod | None = None,
        **attack: Any,
    ) -> None:
        super().__init__(**attack)
        self.adapter_config = (
            None
            if adapter is None
            else AdapterConfig(adapter, adapter_rank, adapter_alpha, adapter_dropout)
        )
        self.loss = loss
        self.granularity = Granularity(granularity)
        self.fraction, self.k = fraction, k
        self.selection = Selection(selection)
        self.layer_optimizer = LayerOptimizer(optimizer)
        self.rho, self.adaptive = rho, adaptive
        self.reselect, self.reselect_every_n_epochs = reselect, reselect_every_n_epochs
        self.score_variant, self.score_radius = ScoreVariant(score_variant), Radius(score_radius)
        self.score_rho = rho if score_rho is None else score_rho
        self.score_ascent_steps = score_ascent_steps
        self.score_batches, self.score_batch_size = score_batches, score_batch_size
        self.score_seed = score_seed
        self.score_file = None if score_file is None else Path(score_file)
        self.clip_grad_norm = clip_grad_norm
        self.selected: list[str] = []
        self.scores: dict[str, float] = {}
        self.scored_epoch = -1
        self.selections: list[dict[str, Any]] = []
        self.num_candidates = 0
        self.trainable_params = 0

    def check_fields(self) -> None:
        """Adapters need ``peft``; a score file must hold scores; the loss must return a loss."""
        if self.adapter_config is not None:
            check_available("adapter")
        if self.score_file is not None:
            self.file_scores()
        loss = self.loss
        if loss is None:
            return
        if not loss.automatic_optimization:
            raise ConfigError(
                "loss",
                f"{type(loss).__name__} steps its own optimizer, "
                "so it cannot be the loss SAFER minimises; give a method that "
                "returns a loss (ERM, PGDAT, TRADES, ANF, Composite).",
            )
        with fields_under("loss.init_args"):
            loss.check_fields()

    # -- checkpointed state -------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The selection, the last scores, when they were taken and every selection so far."""
        return {
            "selected": list(self.selected),
            "scores": dict(self.scores),
            "scored_epoch": self.scored_epoch,
            "selections": [dict(entry) for entry in self.selections],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        self.selected = list(state["selected"])
        self.scores = dict(state["scores"])
        self.scored_epoch = int(state["scored_epoch"])
        self.selections = [dict(entry) for entry in state.get("selections", [])]

    def summary(self) -> dict[str, Any]:
        """The candidates, every scoring, the adapters and the base loss's summary.

        A scoring lists its epoch, step, selected layers and whether the set changed.
        """
        config = self.adapter_config
        return {
            "num_candidates": self.num_candidates,
            "selections": self.selections,
            "reselections": max(0, len(self.selections) - 1),
            "adapter": None
            if config is None
            else {
                "kind": config.kind,
                "rank": config.rank,
                "alpha": config.alpha,
                "dropout": config.dropout,
            },
            "trainable_params": self.trainable_params,
            "loss": None
            if self.loss is None
            else {"method": type(self.loss).__name__, **self.loss.summary()},
        }

    # -- layers and optimizer -------------------------------------------------------------------
    def layers(self, module: ViTClassifier) -> list[Layer]:
        """The candidate layers of the module's ViT."""
        return candidate_layers(module.model, self.granularity)

    def selected_parameter_names(self, module: ViTClassifier) -> set[str]:
        """Full names of what is trained: the selected layers' parameters, or their adapters'."""
        if self.adapter_config is not None:
            return adapter_parameter_names(module.model)
        chosen = set(self.selected)
        layers = self.layers(module)
        return {n for layer in layers if layer.name in chosen for n in layer.param_names}

    def configure_optimizer(self, module: ViTClassifier, factory: OptimizerCallable) -> Optimizer:
        """SAM (or the base optimizer) over the selected layers only; empty before scoring."""
        groups = weight_decay_groups(module.model, names=self.selected_parameter_names(module))
        if self.layer_optimizer is LayerOptimizer.SAM:
            return SAM(groups, base_optimizer=factory, rho=self.rho, adaptive=self.adaptive)
        return factory(groups)

    def on_fit_start(self, module: ViTClassifier) -> None:
        """Check ``k`` against the candidates before any compute; prepare the base loss."""
        plain = merged_copy(module.model) if has_adapters(module.model) else module.model
        self.num_candidates = len(candidate_layers(plain, self.granularity))
        num_selected(self.num_candidates, fraction=self.fraction, k=self.k, field=FIELD)
        if self.score_file is not None:
            self.score(module)  # a file that does not score these layers fails before training
        if self.loss is not None:
            self.loss.on_fit_start(module)

    def on_load_checkpoint(self, module: ViTClassifier, checkpoint: dict[str, Any]) -> None:
        """Put adapters where the checkpoint has them, so that its weights load."""
        if self.adapter_config is None:
            return
        merge_adapters(module.model)
        names = adapted_module_names(checkpoint["state_dict"], prefix="model.")
        inject_adapters(module.model, names, self.adapter_config, seed=0, field=f"{FIELD}.adapter")

    def _move_adapters(self, module: ViTClassifier, epoch: int) -> None:
        """Fresh adapters on the selected layers (seeded by the scoring, equal on every rank)."""
        chosen = set(self.selected)
        names = {
            param.rpartition(".")[0]
            for layer in self.layers(module)
            if layer.name in chosen
            for param in layer.param_names
        }
        inject_adapters(
            module.model,
            names,
            self.adapter_config,  # type: ignore[arg-type]
            seed=self.score_seed + epoch,
            field=f"{FIELD}.adapter",
        )

    # -- scoring and selection ------------------------------------------------------------------
    def file_scores(self) -> dict[str, float]:
        """The layer scores of ``score_file``: a JSON object of layer name to number."""
        path, field = self.score_file, f"{FIELD}.score_file"
        assert path is not None
        if not path.is_file():
            raise ConfigError(
                field, f"{str(path)!r} does not exist; `make rollback` writes the rollback gains."
            )
        try:
            scores = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(field, f"{str(path)!r} is not JSON ({err}).") from err
        valid = isinstance(scores, dict) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values()
        )
        if not valid or not scores:
            raise ConfigError(
                field, f"{str(path)!r} must hold a JSON object of layer name to score."
            )
        return {str(name): float(value) for name, value in scores.items()}

    def score(self, module: ViTClassifier) -> dict[str, float]:
        """The score file's layer scores, or sharpness on the scoring subset (mean over ranks)."""
        if self.score_file is not None:
            names = [layer.name for layer in self.layers(module)]
            scores = self.file_scores()
            missing, unknown = set(names) - set(scores), set(scores) - set(names)
            if missing or unknown:
                raise ConfigError(
                    f"{FIELD}.score_file",
                    f"{str(self.score_file)!r} must score exactly the candidate layers: "
                    f"missing {sorted(missing)}, unknown {sorted(unknown)}. Measure it on this "
                    "model with this granularity.",
                )
            return {name: scores[name] for name in names}
        trainer = module.trainer
        loader = train_loader(module)
        batch_size = self.score_batch_size or loader.batch_size
        if batch_size is None:
            raise ConfigError(
                f"{FIELD}.score_batch_size",
                "the training loader batches by a sampler, not a size: set score_batch_size.",
            )
        batches = [
            (x.to(module.device), y.to(module.device))
            for x, y in fixed_batches(
                loader.dataset, self.score_batches, batch_size, self.score_seed
            )
        ]
        attack = partial(
            pgd,
            eps=self.eps * self.eps_scale(module),
            alpha=self.alpha * self.eps_scale(module),
            steps=self.steps,
            norm=self.norm,
            random_init=self.random_init,
        )
        layers = self.layers(module)
        scores = layer_sharpness(
            module.model,
            layers,
            batches,
            rho=self.score_rho,
            radius=self.score_radius,
            variant=self.score_variant,
            ascent_steps=self.score_ascent_steps,
            attack=attack,
        )
        values = torch.tensor(list(scores.values()), device=module.device)
        values = trainer.strategy.reduce(values, reduce_op="mean")
        return dict(zip(scores, values.tolist(), strict=True))

    def on_train_epoch_start(self, module: ViTClassifier) -> None:
        """Score and select at the first epoch and every ``reselect_every_n_epochs`` after."""
        if self.loss is not None:
            self.loss.on_train_epoch_start(module)
        epoch = module.current_epoch
        due = self.scored_epoch < 0 or (
            self.reselect and epoch - self.scored_epoch >= self.reselect_every_n_epochs
        )
        if not due:
            return
        if self.adapter_config is not None:
            merge_adapters(module.model)
        layers = self.layers(module)
        k = num_selected(len(layers), fraction=self.fraction, k=self.k, field=FIELD)
        scores = self.score(module)
        generator = torch.Generator().manual_seed(self.score_seed + epoch)
        selected = select_layers(scores, k, self.selection, generator)
        changed = set(selected) != set(self.selected)
        self.selected, self.scores, self.scored_epoch = selected, scores, epoch
        self.selections.append(
            {
                "epoch": epoch,
                "global_step": module.global_step,
                "selected": list(selected),
                "changed": changed,
            }
        )
        if self.adapter_config is not None:
            self._move_adapters(module, epoch)
        if changed or self.adapter_config is not None:
            module.rebuild_optimizers()
        names = self.selected_parameter_names(module)
        trainable = sum(p.numel() for n, p in module.model.named_parameters() if n in names)
        self.trainable_params = trainable
        prefix = "sharpness" if self.score_file is None else "layer_score"
        module.log_dict({f"{prefix}/{name}": value for name, value in scores.items()})
        module.log_dict(
            {"safer/num_selected": float(len(selected)), "safer/trainable_params": float(trainable)}
        )
        log_layer_scores(module.trainer, scores, selected, "safer", epoch)
        rank_zero_info(
            f"SAFER epoch {epoch}: selected {selected} ({trainable} parameters)"
            f"{'' if changed else ', unchanged'}"
        )

    # -- training step --------------------------------------------------------------------------
    def _clip(self, params: list[Tensor]) -> None:
        if self.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)

    def _selected_backward(
        self,
        module: ViTClassifier,
        params: list[Tensor],
        loss_at_weights: Callable[[], dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """The loss at the current weights; its gradient for ``params`` only, not synced."""
        no_sync = getattr(module.trainer.strategy, "block_backward_sync", nullcontext)
        with no_sync():
            out = loss_at_weights()
            module.manual_backward(out["loss"], inputs=params)
        return {name: value.detach() for name, value in out.items()}

    def _loss_function(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> Callable[[], dict[str, Tensor]]:
        """What each pass minimises: CE on PGD examples made once here, or the base loss."""
        if self.loss is not None:
            return partial(self.loss.training_step, module, batch, batch_idx)
        x, y = batch
        x_adv = self.attack(module, x, y)
        return lambda: {"loss": F.cross_entropy(module(x_adv), y)}

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """One SAM (or base) step of the selected layers on PGD examples made at w."""
        x, _ = batch
        opt = cast(LightningOptimizer, module.optimizers())  # SAFER builds one optimizer
        params = [p for group in opt.optimizer.param_groups for p in group["params"]]
        loss_at_weights = self._loss_function(module, batch, batch_idx)
        module.model.zero_grad(set_to_none=True)
        first = self._selected_backward(module, params, loss_at_weights)
        loss = first["loss"]
        out = {
            "adv_loss": loss,
            **{name: value for name, value in first.items() if name not in ("loss", "logits")},
        }
        if self.layer_optimizer is LayerOptimizer.SAM:

            def closure() -> Tensor:
                module.model.zero_grad(set_to_none=True)
                sam_loss = self._selected_backward(module, params, loss_at_weights)["loss"]
                average_gradients(params)
                self._clip(params)
                return sam_loss

            out["sam_loss"] = opt.step(closure=closure)
        else:
            average_gradients(params)
            self._clip(params)
            opt.step()
        module.model.zero_grad(set_to_none=True)
        scheduler = module.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]
        with torch.no_grad():
            logits = module(x)
        return {"loss": loss, "logits": logits, **out}
