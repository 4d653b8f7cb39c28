from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules import PGDAT, SAFER, TRADES, ViTClassifier
from robust_vit.errors import ConfigError
from robust_vit.sam import SAM
from robust_vit.schedules import WarmupCosineLR

TINY = {"embed_dim": 16, "depth": 2, "num_heads": 2}
FAST = {"eps": 2 / 255, "alpha": 1 / 255, "steps": 1, "score_batches": 1}


def tiny_module(method: object, seed: int = 0, **kwargs: object) -> ViTClassifier:
    torch.manual_seed(seed)
    return ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=TINY,
        method=method,  # type: ignore[arg-type]
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        **kwargs,
    )


def loader(n: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 32, 32, generator=g)
    data = TensorDataset(x, torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=8)


def fit(
    module: ViTClassifier,
    tmp_path: Path,
    epochs: int = 1,
    callbacks: list | None = None,
    seed: int = 0,
) -> L.Trainer:
    L.seed_everything(seed)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(module, train_dataloaders=loader())
    return trainer


def test_frozen_layers_are_bit_identical_and_hold_no_optimizer_state(tmp_path: Path) -> None:
    module = tiny_module(SAFER(k=2, reselect=False, **FAST))
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = fit(module, tmp_path)
    selected = module.method.selected_parameter_names(module)
    assert len(module.method.selected) == 2 and selected
    for name, p in module.model.named_parameters():
        assert torch.equal(p, before[name]) != (name in selected), name
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, SAM)
    names = {id(p): n for n, p in module.model.named_parameters()}
    in_groups = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}
    assert in_groups == selected
    assert {names[id(p)] for p in optimizer.state} == selected
    assert all(p.grad is None for p in module.model.parameters())


class GradientAccumulations(L.Callback):
    """Names of the parameters whose ``.grad`` autograd accumulated during training steps."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.handles: list = []

    def on_train_batch_start(self, trainer: L.Trainer, module: ViTClassifier, *_: object) -> None:
        for name, p in module.model.named_parameters():
            hook = partial(lambda n, _: self.names.add(n), name)
            self.handles.append(p.register_post_accumulate_grad_hook(hook))

    def on_train_batch_end(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


@pytest.mark.parametrize("optimizer", ["sam", "base"])
def test_training_steps_compute_gradients_of_the_selected_layers_only(
    tmp_path: Path, optimizer: str
) -> None:
    module = tiny_module(SAFER(k=1, reselect=False, optimizer=optimizer, **FAST))
    accumulated = GradientAccumulations()
    fit(module, tmp_path, callbacks=[accumulated])
    assert accumulated.names == module.method.selected_parameter_names(module)


def test_reselection_changes_the_trainable_set_and_rebuilds_the_optimizer(tmp_path: Path) -> None:
    seen: list[tuple[frozenset[str], int, frozenset[int]]] = []
    lrs: list[tuple[float, float]] = []

    class Watch(L.Callback):
        def on_train_batch_start(
            self, trainer: L.Trainer, pl_module: ViTClassifier, batch: object, batch_idx: int
        ) -> None:
            if batch_idx > 0:
                return
            scheduler = trainer.lr_scheduler_configs[0].scheduler
            lrs.append((trainer.optimizers[0].param_groups[0]["lr"], scheduler.get_last_lr()[0]))

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: ViTClassifier) -> None:
            opt = trainer.optimizers[0]
            seen.append(
                (
                    frozenset(pl_module.method.selected),
                    id(opt),
                    frozenset(id(p) for g in opt.param_groups for p in g["params"]),
                )
            )

    module = tiny_module(
        SAFER(k=2, selection="random", reselect_every_n_epochs=1, **FAST),
        lr_scheduler=partial(WarmupCosineLR, warmup_fraction=0.5),
    )
    fit(module, tmp_path, epochs=2, callbacks=[Watch()])
    (first, opt_a, params_a), (second, opt_b, params_b) = seen
    assert first != second and opt_a != opt_b
    assert lrs[1][0] == lrs[1][1] > lrs[0][0]  # the rebuilt optimizer continues the schedule
    expected = {
        id(p)
        for n, p in module.model.named_parameters()
        if n in module.method.selected_parameter_names(module)
    }
    assert params_b == expected != params_a


def test_rho_zero_sam_run_equals_the_base_optimizer_run(tmp_path: Path) -> None:
    runs = []
    for optimizer, rho in (("sam", 0.0), ("base", 0.05)):
        module = tiny_module(
            SAFER(k=3, optimizer=optimizer, rho=rho, score_rho=0.05, reselect=False, **FAST)
        )
        fit(module, tmp_path / optimizer)
        runs.append(module)
    assert runs[0].method.selected == runs[1].method.selected
    for p, q in zip(runs[0].parameters(), runs[1].parameters(), strict=True):
        assert torch.equal(p, q)


def test_selection_round_trips_through_the_state_dict() -> None:
    module = tiny_module(SAFER(k=2, reselect=False, **FAST))
    module.method.set_extra_state(
        {
            "selected": ["blocks.1.mlp.fc2", "head"],
            "scored_epoch": 0,
            "scores": {"blocks.1.mlp.fc2": 0.2, "head": 0.1},
        }
    )
    fresh = tiny_module(SAFER(k=2, reselect=False, **FAST), seed=1)
    fresh.load_state_dict(module.state_dict())
    assert fresh.method.selected == module.method.selected
    assert fresh.method.scores == module.method.scores
    optimizer = fresh.method.configure_optimizer(fresh, partial(torch.optim.SGD, lr=0.1))
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(
        fresh.method.selected_parameter_names(fresh)
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"eps": -0.1}, "eps"),
        ({"eps": 2.0}, "eps"),
        ({"k": 0}, "k"),
        ({"rho": -1.0}, "rho"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"model\.method\.init_args\.{field}"):
        SAFER(**kwargs)


def test_k_larger_than_the_candidates_fails_before_training() -> None:
    module = tiny_module(SAFER(k=99))
    with pytest.raises(ConfigError, match=r"init_args\.k"):
        module.method.on_fit_start(module)


def test_pgd_at_and_trades_steps_give_finite_losses_and_gradients() -> None:
    x, y = torch.rand(4, 1, 32, 32), torch.randint(0, 10, (4,))
    for method in (PGDAT(eps=4 / 255, steps=2, clean_weight=0.5), TRADES(eps=4 / 255, steps=2)):
        module = tiny_module(method)
        out = method.training_step(module, (x, y), 0)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["logits"].shape == (4, 10)
        assert module.vit.head.weight.grad is not None
    assert out["kl"] >= 0


def test_a_score_file_selects_its_highest_scored_layers(tmp_path: Path) -> None:
    probe = tiny_module(SAFER(**FAST))
    names = [layer.name for layer in probe.method.layers(probe)]
    scores = {name: float(i % 5) for i, name in enumerate(names)}
    path = tmp_path / "gains.json"
    path.write_text(json.dumps(scores))
    module = tiny_module(SAFER(k=2, score_file=str(path), reselect=False, **FAST))
    fit(module, tmp_path)
    top = sorted(names, key=lambda name: -scores[name])[:2]
    assert set(module.method.selected) == set(top)
    assert module.method.scores == scores


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "does not exist"), ("[1, 2]", "JSON object"), ("{", "not JSON")],
)
def test_a_bad_score_file_names_the_field(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "gains.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=rf"init_args\.score_file.*{match}"):
        SAFER(score_file=str(path))


def test_a_score_file_of_other_layers_fails_before_training(tmp_path: Path) -> None:
    path = tmp_path / "gains.json"
    path.write_text(json.dumps({"head": 1.0, "blocks.9.mlp.fc1": 0.5}))
    module = tiny_module(SAFER(k=1, score_file=str(path)))
    with pytest.raises(ConfigError, match=r"score_file.*unknown \['blocks\.9\.mlp\.fc1'\]"):
        module.method.on_fit_start(module)
