"""Every YAML in experiments/ runs through the real CLI for one batch on a tiny stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from application.cli import main
from tests.conftest import EXPERIMENTS, TINY_MODEL
from tests.fakes import write_cifar, write_image_folder

# experiments/sweeps/ holds sweep plans, not CLI configs: tests/integration/test_sweep_commands.py
# resolves every command they expand to.
ALL_YAMLS = sorted(
    p.relative_to(EXPERIMENTS).as_posix()
    for p in EXPERIMENTS.rglob("*.yaml")
    if p.parent.name != "sweeps"
)
RUN_ELSEWHERE = {"ddp.yaml": "tests/integration/test_ddp.py runs it with 2 CPU processes"}
DEFAULT_DATA = "data/fashion_mnist.yaml"
DEFAULT_MODEL = "model/vit_cpu.yaml"
# Overrides reach the last callback of a list: keep each evaluation suite to a few examples.
SMALL_EVAL = ["--trainer.callbacks.init_args.num_examples=10"]
SMALL_CORRUPTIONS = [*SMALL_EVAL, "--trainer.callbacks.init_args.corruptions=[contrast]"]
STAND_IN_OVERRIDES = {
    "eval/cpu.yaml": SMALL_CORRUPTIONS,
    "eval/corruptions.yaml": SMALL_CORRUPTIONS,
    "eval/fashion_mnist.yaml": SMALL_CORRUPTIONS,
    "eval/adversarial.yaml": SMALL_EVAL,
    "eval/fashion_mnist_at.yaml": SMALL_EVAL,
    "regime/safer_stage1.yaml": [*SMALL_EVAL, "--trainer.callbacks.init_args.train_examples=10"],
    "eval/autoattack.yaml": SMALL_EVAL,
    "eval/autoattack_fashion_mnist.yaml": SMALL_EVAL,
    "eval/robust_validation.yaml": [*SMALL_EVAL, "--trainer.callbacks.init_args.train_examples=10"],
    # `make real-vit` builds its weights (a download): the composition runs from random weights
    "model/vit_small_patch14_dinov2_real.yaml": ["--model.weights=null"],
    "regime/real_vit_probe.yaml": ["--model.weights=null"],
    "regime/real_vit_finetune.yaml": ["--model.weights=null"],
    "regime/real_vit_anf.yaml": [
        "--model.weights=null",
        "--model.method.init_args.max_synthesis_steps=2",
    ],
    "eval/real_vit.yaml": SMALL_CORRUPTIONS,
    "protocols/quick.yaml": SMALL_EVAL,
    "protocols/robustbench_cifar10_linf.yaml": SMALL_EVAL,
    "protocols/robustbench_cifar10_l2.yaml": SMALL_EVAL,
    "protocols/robustbench_imagenet_linf.yaml": SMALL_EVAL,
}
IMAGENET_PROTOCOL = "protocols/robustbench_imagenet_linf.yaml"
CPU_STAND_IN = [
    "--trainer.accelerator=cpu",
    "--trainer.precision=32-true",
    "--data.init_args.num_workers=0",
]


def data_overrides(
    data_yaml: str, tmp_path: Path, fmnist_dir: Path, imagenet_classes: int = 3
) -> list[str]:
    """Point each dataset config at small files in its real on-disk format."""
    if data_yaml == "data/fashion_mnist.yaml":
        return [f"--data.init_args.data_dir={fmnist_dir}"]
    if data_yaml in ("data/cifar10.yaml", "data/cifar100.yaml"):
        classes = 10 if data_yaml.endswith("10.yaml") else 100
        return [f"--data.init_args.data_dir={write_cifar(tmp_path / 'cifar', classes)}"]
    if data_yaml == "data/imagenet.yaml":
        root = write_image_folder(tmp_path / "imagenet", classes=imagenet_classes, per_class=4)
        return [
            f"--data.init_args.data_dir={root}",
            f"--data.init_args.num_classes={imagenet_classes}",
            "--data.init_args.img_size=32",
            "--data.init_args.val_fraction=0.25",
        ]
    raise AssertionError(f"no stand-in data for {data_yaml}")


def shift_sets(tmp_path: Path) -> list[str]:
    """Small ImageNet-A and -Sketch stand-ins whose classes are the stand-in ImageNet's."""
    sets = {
        name: write_image_folder(tmp_path / name, classes=3, per_class=2, splits=("",))
        for name in ("imagenet_a", "imagenet_sketch")
    }
    return [
        f"--trainer.callbacks.init_args.class_index={tmp_path / 'imagenet' / 'train'}",
        "--trainer.callbacks.init_args.sets=" + json.dumps({k: str(v) for k, v in sets.items()}),
    ]


DATA_FOR = {"eval/shifts.yaml": "data/imagenet.yaml", IMAGENET_PROTOCOL: "data/imagenet.yaml"}


def write_imagenet_subset(tmp_path: Path) -> None:
    """The id list the ImageNet protocol reads, as RobustBench writes it: paths under val/."""
    val = tmp_path / "imagenet" / "val"
    paths = sorted(p.relative_to(val).as_posix() for p in val.rglob("*.png"))
    ids = tmp_path / "data" / "imagenet" / "robustbench_imagenet_5000.txt"
    ids.parent.mkdir(parents=True)
    ids.write_text("\n".join(paths[::-1]) + "\n")


# Regime overlays change options of the configs they are loaded after.
REGIME_BELOW = {
    "regime/anf_token_units.yaml": ["method/anf.yaml"],
    "regime/anf_finetune.yaml": ["method/erm.yaml", "finetune.yaml"],
    "regime/safer_stage1.yaml": ["method/pgd_at.yaml"],
    "regime/safer_stage2.yaml": ["method/pgd_at.yaml", "finetune.yaml"],
    "regime/safer_selection.yaml": [
        "method/safer.yaml",
        "finetune.yaml",
        "regime/safer_stage2.yaml",
    ],
    "regime/safer_stage2_attack.yaml": [
        "method/pgd_at.yaml",
        "finetune.yaml",
        "regime/safer_stage2.yaml",
    ],
    "regime/pgd_at_anf_stage2.yaml": [
        "method/pgd_at_anf.yaml",
        "finetune.yaml",
        "regime/safer_stage2.yaml",
    ],
    "regime/real_vit_probe.yaml": [
        "model/vit_small_patch14_dinov2_real.yaml",
        "method/linear_probe.yaml",
    ],
    "regime/pgd_at_dat_anf_stage2.yaml": [
        "method/pgd_at_dat_anf.yaml",
        "finetune.yaml",
        "regime/safer_stage2.yaml",
    ],
    "regime/real_vit_finetune.yaml": [
        "model/vit_small_patch14_dinov2_real.yaml",
        "method/erm.yaml",
        "finetune.yaml",
    ],
    "regime/real_vit_anf.yaml": [
        "model/vit_small_patch14_dinov2_real.yaml",
        "method/anf.yaml",
        "finetune.yaml",
        "regime/real_vit_finetune.yaml",
    ],
}
# The tiny stand-in's candidate layers (depth 1), scored for the oracle's score file.
TINY_LAYERS = [
    "patch_embed.proj",
    *(f"blocks.0.{name}" for name in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")),
    "head",
]


def write_score_file(folder: Path) -> None:
    """The rollback gains make rollback would write, for the tiny stand-in's layers."""
    path = folder / "runs" / "safer_rollback" / "gains.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({name: i / 10 for i, name in enumerate(TINY_LAYERS)}))


def composition(yaml: str) -> tuple[list[str], str]:
    """The overlays a user would stack with ``yaml``, and the data config among them."""
    data = yaml if yaml.startswith("data/") else DATA_FOR.get(yaml, DEFAULT_DATA)
    model = yaml if yaml.startswith("model/") else DEFAULT_MODEL
    layers = ["base.yaml", data, model]
    if yaml.startswith("method/safer_"):  # ablation overlays change one option of safer.yaml
        layers.append("method/safer.yaml")
    layers += REGIME_BELOW.get(yaml, [])
    if yaml not in layers:
        layers.append(yaml)
    return layers, data


@pytest.mark.parametrize("yaml", [y for y in ALL_YAMLS if y not in RUN_ELSEWHERE])
def test_yaml_runs_one_batch(
    yaml: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers, data = composition(yaml)
    args = ["fit"]
    for layer in layers:
        args += ["--config", str(EXPERIMENTS / layer)]
    # AutoAttack standard's APGD-T targets 9 other classes: its ImageNet stand-in has 10
    args += data_overrides(data, tmp_path, fmnist_dir, 10 if yaml == IMAGENET_PROTOCOL else 3)
    if yaml == "eval/shifts.yaml":
        args += shift_sets(tmp_path)
    args += [
        f"--model.model_kwargs={TINY_MODEL}",
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--test_after_fit=true",
        *CPU_STAND_IN,
        *STAND_IN_OVERRIDES.get(yaml, []),
    ]
    monkeypatch.chdir(tmp_path)
    if yaml == "method/safer_oracle.yaml":
        write_score_file(tmp_path)
    if yaml == IMAGENET_PROTOCOL:
        write_imagenet_subset(tmp_path)
    main(args)
    (record,) = (tmp_path / "runs").rglob("results.json")
    assert "test/acc" in json.loads(record.read_text())["test"]["metrics"]
