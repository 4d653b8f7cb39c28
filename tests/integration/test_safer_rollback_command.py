"""benchmarks/safer_rollback.py on tiny weights files written here (Fashion-MNIST slice)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import timm
import torch
import yaml

from benchmarks import safer_rollback
from robust_vit.layers import candidate_layers
from robust_vit.models import save_vit_weights
from tests.conftest import EXPERIMENTS

META = {
    "model_name": "vit_tiny_patch16_224",
    "num_classes": 10,
    "img_size": 32,
    "in_chans": 1,
    "patch_size": 8,
    "model_kwargs": {"embed_dim": 12, "depth": 1, "num_heads": 2},
    "mean": [0.5],
    "std": [0.5],
}
CHANGED = ("head", "blocks.0.mlp.fc1")


def write_pair(folder: Path) -> tuple[Path, Path]:
    """Random 'last' weights, and 'best' weights that differ from them in CHANGED only."""
    torch.manual_seed(0)
    kwargs = {k: META[k] for k in ("num_classes", "img_size", "in_chans", "patch_size")}
    vit = timm.create_model(META["model_name"], **kwargs, **META["model_kwargs"])
    last = save_vit_weights(vit, folder / "last.safetensors", META)
    with torch.no_grad():
        for layer in candidate_layers(vit):
            if layer.name in CHANGED:
                for name in layer.param_names:
                    vit.get_parameter(name).add_(0.5 * torch.randn_like(vit.get_parameter(name)))
    return last, save_vit_weights(vit, folder / "best.safetensors", META)


def test_command_scores_rolls_back_and_compares(
    tmp_path: Path, fmnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last, best = write_pair(tmp_path)
    out = tmp_path / "out"
    argv = [
        f"--last={last}",
        f"--best={best}",
        f"--out={out}",
        f"--data-dir={fmnist_dir}",
        "--limit-train=200",
        "--num-examples=20",
        "--steps=2",
        "--score-batches=1",
        "--score-batch-size=10",
        "--train-steps=1",
        "--fraction=0.5",
        "--permutations=200",
    ]
    assert safer_rollback.main(argv) == 0
    report = json.loads((out / "rollback.json").read_text())
    rows = {row["layer"]: row for row in report["layers"]}
    assert len(rows) == 6  # patch embedding, qkv, proj, fc1, fc2, head
    for name, row in rows.items():
        if name not in CHANGED:  # rolling back a layer equal in both files changes nothing
            assert row["rollback_gain"] == 0.0, name
    assert report["validation"]["examples"] == 20
    assert report["top_k"]["k"] == 3
    assert len(report["top_k"]["sharpest"]) == len(report["top_k"]["largest_gain"]) == 3
    rho, p = report["spearman"]["rho"], report["spearman"]["permutation_p"]
    if len({row["rollback_gain"] for row in rows.values()}) == 1:  # no rollback moved accuracy
        assert rho is None and p is None
    else:
        assert -1 <= rho <= 1 and 0 < p <= 1
    assert (out / "rollback.png").stat().st_size > 0
    gains = json.loads((out / "gains.json").read_text())
    assert gains == {name: row["rollback_gain"] for name, row in rows.items()}
    printed = capsys.readouterr().out
    assert "Spearman rho" in printed and "top-3 overlap" in printed


def test_command_refuses_weights_of_another_architecture(
    tmp_path: Path, fmnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last, _ = write_pair(tmp_path)
    other = {**META, "model_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2}}
    vit = timm.create_model(
        META["model_name"],
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        embed_dim=16,
        depth=1,
        num_heads=2,
    )
    best = save_vit_weights(vit, tmp_path / "other.safetensors", other)
    argv = [f"--last={last}", f"--best={best}", f"--data-dir={fmnist_dir}"]
    assert safer_rollback.main(argv) == 2
    assert "--best: is another architecture" in capsys.readouterr().err
    assert safer_rollback.main([f"--last={tmp_path / 'none'}", f"--best={best}"]) == 2
    assert "--last:" in capsys.readouterr().err


def _init_args(path: str) -> dict:
    return yaml.safe_load((EXPERIMENTS / path).read_text())["model"]["method"]["init_args"]


def test_defaults_are_the_stage1_regime() -> None:
    """The defaults restate the regime YAMLs: the validation, the data, SAFER's scoring and k."""
    args = safer_rollback.parse_args(["--last=a", "--best=b"])
    stage1 = yaml.safe_load((EXPERIMENTS / "regime/safer_stage1.yaml").read_text())
    validation = next(
        c["init_args"]
        for c in stage1["trainer"]["callbacks+"]
        if c["class_path"] == "callbacks.RobustValidation"
    )
    attack = validation["attack"]["init_args"]
    assert args.num_examples == validation["num_examples"]
    assert args.eps == float(Fraction(attack["eps"]))
    assert (args.steps, args.rel_step) == (attack["steps"], attack["rel_step"])
    assert args.seed == validation.get("seed", 0)
    data = stage1["data"]["init_args"]
    assert (args.limit_train, args.val_fraction) == (data["limit_train"], data["val_fraction"])
    safer = _init_args("method/safer.yaml")
    assert args.score_batch_size == (safer["score_batch_size"] or data["batch_size"])
    assert args.score_rho == (safer["score_rho"] or safer["rho"])
    assert (args.score_batches, args.score_seed) == (safer["score_batches"], safer["score_seed"])
    assert safer["score_variant"] == "one_step"
    assert args.fraction == _init_args("regime/safer_selection.yaml")["fraction"]
    assert _init_args("regime/safer_selection.yaml")["score_radius"] == "absolute"
    train = _init_args("regime/safer_stage2_attack.yaml")
    assert args.train_eps == float(Fraction(train["eps"]))
    assert args.train_alpha == float(Fraction(train["alpha"]))
    assert args.train_steps == train["steps"]
