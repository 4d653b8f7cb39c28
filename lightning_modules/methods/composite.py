"""A method whose loss is a weighted sum of other methods' losses (e.g. DAT + NS)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from torch import Tensor, nn

from lightning_modules.methods.base import Batch, FinetuneMethod
from robust_vit.errors import ConfigError
from robust_vit.ranges import NonNegativeFloat, check_ranges, fields_under

if TYPE_CHECKING:
    from lightning_modules.classifier import ViTClassifier

FIELD = "model.method.init_args"


def term_names(terms: list[FinetuneMethod]) -> list[str]:
    """Log prefixes of the terms: the class name in lower case, numbered when it repeats."""
    names = [type(term).__name__.lower() for term in terms]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}{seen[name]}" if name in repeated else name)
    return out


class Composite(FinetuneMethod):
    """``sum_i weights[i] * terms[i].loss``: methods composed as terms of one loss.

    Each term is a method of its own (its options, state and synthesis machinery unchanged) and
    runs its training step on the same batch; the composite adds their losses. The ANF paper's
    DAT + NS, for instance, is PGD-AT plus ANF with ``clean_weight: 0`` (its noisy term alone).
    The training accuracy is the first term's; every term's scalars are logged as
    ``train/<term>/<name>`` and its summary goes to the record under ``terms``. Terms that step
    their own optimizer (SAFER) cannot be summed: SAFER takes a composite as its ``loss``
    instead.

    Args:
        terms: the methods whose losses are added, at least two.
        weights: one weight per term (None: all 1).
    """

    @check_ranges(FIELD)
    def __init__(
        self, terms: list[FinetuneMethod], weights: list[NonNegativeFloat] | None = None
    ) -> None:
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.weights = [1.0] * len(terms) if weights is None else [float(w) for w in weights]
        self.names = term_names(terms)

    @property
    def methods(self) -> list[FinetuneMethod]:
        """The terms as methods (iterating the ``nn.ModuleList`` types them as plain modules)."""
        return cast(list[FinetuneMethod], list(self.terms))

    def check_fields(self) -> None:
        """At least two terms, each returning a loss and valid itself, and one weight per term."""
        terms = self.methods
        if len(terms) < 2:
            raise ConfigError(
                "terms",
                f"needs at least two methods, got {len(terms)}; "
                "a single method is used directly as model.method.",
            )
        for i, term in enumerate(terms):
            if not term.automatic_optimization:
                raise ConfigError(
                    f"terms[{i}]",
                    f"{type(term).__name__} steps its own "
                    "optimizer, so its loss cannot be added to others; make the "
                    "composite SAFER's `loss` instead.",
                )
            with fields_under(f"terms[{i}].init_args"):
                term.check_fields()
        if len(self.weights) != len(terms):
            raise ConfigError(
                "weights",
                f"has {len(self.weights)} values for {len(terms)} "
                "terms: give one weight per term, or leave it null.",
            )

    def summary(self) -> dict[str, Any]:
        """Each term's method, weight and own summary."""
        return {
            "terms": [
                {"name": name, "method": type(term).__name__, "weight": weight, **term.summary()}
                for name, term, weight in zip(self.names, self.methods, self.weights, strict=True)
            ]
        }

    def on_fit_start(self, module: ViTClassifier) -> None:
        """Let every term check and prepare itself."""
        for term in self.methods:
            term.on_fit_start(module)

    def on_train_epoch_start(self, module: ViTClassifier) -> None:
        """Let every term act at the epoch boundary."""
        for term in self.methods:
            term.on_train_epoch_start(module)

    def on_load_checkpoint(self, module: ViTClassifier, checkpoint: dict[str, Any]) -> None:
        """Let every term prepare for the checkpoint's weights."""
        for term in self.methods:
            term.on_load_checkpoint(module, checkpoint)

    def training_step(
        self, module: ViTClassifier, batch: Batch, batch_idx: int
    ) -> dict[str, Tensor]:
        """Every term's step on the batch; the weighted sum of their losses."""
        outs = [term.training_step(module, batch, batch_idx) for term in self.methods]
        loss = sum(
            (w * out["loss"] for w, out in zip(self.weights, outs, strict=True)),
            start=outs[0]["loss"].new_zeros(()),
        )
        scalars = {
            f"{name}/{key}": value.detach() if key == "loss" else value
            for name, out in zip(self.names, outs, strict=True)
            for key, value in out.items()
            if key != "logits"
        }
        return {"loss": loss, "logits": outs[0]["logits"], **scalars}
