"""benchmarks/anf_nullspace_size.py on tiny weights files and a checkpoint written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from benchmarks import anf_nullspace_size
from robust_vit.models import save_vit_weights

META = {
    "model_name": "vit_tiny_patch16_224",
    "num_classes": 10,
    "img_size": 32,
    "in_chans": 1,
    "patch_size": 8,
    "model_kwargs": {"embed_dim": 12, "depth": 1, "num_heads": 2, "global_pool": "avg"},
    "mean": [0.5],
    "std": [0.5],
}


def tiny_vit(seed: int) -> nn.Module:
    """A random tiny ViT with a unit-scale head."""
    torch.manual_seed(seed)
    kwargs = {k: META[k] for k in ("num_classes", "img_size", "in_chans", "patch_size")}
    vit = timm.create_model(META["model_name"], **kwargs, **META["model_kwargs"])
    with torch.no_grad():
        vit.head.weight.normal_(0, 1)
    return vit


def write_checkpoint(vit: nn.Module, path: Path) -> None:
    """A ViTClassifier-shaped checkpoint: hyperparameters and ``model.*`` state."""
    state = {f"model.vit.{k}": v for k, v in vit.state_dict().items()}
    state["model.mean"] = torch.tensor(META["mean"]).view(1, -1, 1, 1)
    state["model.std"] = torch.tensor(META["std"]).view(1, -1, 1, 1)
    state["method.noise"] = torch.zeros(3)  # the method's buffers are not the model's
    path.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": dict(META), "state_dict": state}, path)


def sweep_folder(root: Path) -> tuple[Path, Path]:
    """runs/anf with erm as exported weights and anf as checkpoints, and a fixed weights file."""
    runs = root / "runs" / "anf"
    for seed in (0, 1):
        erm = runs / "erm" / f"seed{seed}"
        erm.mkdir(parents=True)
        save_vit_weights(tiny_vit(seed), erm / "weights.safetensors", META)
        ckpt = runs / "anf" / f"seed{seed}" / "version_0" / "checkpoints" / "last.ckpt"
        write_checkpoint(tiny_vit(10 + seed), ckpt)
        # an evaluation's outcome file, newer than the checkpoint, is not weights
        save_file(
            {"index": torch.arange(4)}, ckpt.parents[1] / "adversarial_test.outcomes.safetensors"
        )
    return runs, save_vit_weights(tiny_vit(99), root / "pretrained.safetensors", META)


ARGS = [
    "--seeds",
    "0",
    "1",
    "--num-images=16",
    "--max-steps=3",
    "--batch-size=8",
    "--directions=4",
    "--random-norms",
    "0",
    "1000",
]


def test_command_measures_every_arm_and_seed(
    tmp_path: Path, fmnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, pretrained = sweep_folder(tmp_path)
    out = tmp_path / "out"
    argv = [
        f"--runs={runs}",
        "--arms",
        "pretrained",
        "erm",
        "anf",
        f"--fixed=pretrained={pretrained}",
        f"--out={out}",
        f"--data-dir={fmnist_dir}",
        *ARGS,
    ]
    assert anf_nullspace_size.main(argv) == 0
    report = json.loads((out / "nullspace_size.json").read_text())
    assert list(report["arms"]) == ["pretrained", "erm", "anf"]
    assert report["arms"]["pretrained"]["fixed_weights"]
    assert not report["arms"]["anf"]["fixed_weights"]
    for seed in ("0", "1"):
        assert report["arms"]["anf"]["seeds"][seed]["weights"].endswith("last.ckpt")
    for arm in report["arms"].values():
        assert set(arm["seeds"]) == {"0", "1"}
        for seed in arm["seeds"].values():
            lower, upper = seed["bracket"]
            assert upper is None or lower < upper
            assert seed["random_pass_fraction"]["0.0"] == 1.0
        mean, half = arm["summary"]["largest_passing_norm"]
        norms = [s["largest_passing_norm"] for s in arm["seeds"].values()]
        assert min(norms) <= mean <= max(norms) and half is not None and half >= 0
        assert arm["summary"]["random_pass_fraction@0"] == [1.0, 0.0]
    printed = capsys.readouterr().out
    assert "pretrained" in printed and "(fixed weights)" in printed


def test_missing_run_names_the_field_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [f"--runs={tmp_path}", "--arms", "erm", f"--out={tmp_path / 'out'}"]
    assert anf_nullspace_size.main(argv) == 2
    err = capsys.readouterr().err
    assert "--runs" in err and "make sweep-anf" in err and "--fixed erm=FILE" in err
