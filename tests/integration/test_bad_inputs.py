"""The bad-input matrix: each bad input fails through the real CLI before any compute.

Every case runs ``application.cli.main`` in a fresh working folder that already holds an earlier
run and an exported weights file. It must exit with code 2 (argument errors and
:class:`~robust_vit.errors.ConfigError` alike), print a message naming the field or file and a
fix, run no forward pass, write no checkpoint or metric row, and leave the earlier files as they
were.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from application.cli import main
from lightning_modules import ViTClassifier
from robust_vit.models import NormalizedViT, create_vit, save_vit_weights
from tests.conftest import EXPERIMENTS, TINY_MODEL
from tests.fakes import write_fashion_mnist, write_idx, write_image_folder

METHODS = EXPERIMENTS / "method"
METHOD = "model.method.init_args"
CALLBACK = "trainer.callbacks.init_args"
ATTACKS = f"{CALLBACK}.attacks.init_args"
TINY = json.loads(TINY_MODEL)


@dataclass
class Case:
    """One bad input: the argv it adds, and what the error message must contain."""

    name: str
    args: Callable[[Path, Path], list[str]]
    field: str
    fix: str
    subcommand: str = "fit"
    env: dict[str, str | None] | None = None
    base: str = "fmnist"


def fmnist_base(data: Path) -> list[str]:
    return [
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={data}",
        "--data.init_args.batch_size=16",
    ]


def folder_base(root: Path) -> list[str]:
    return [
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "imagenet.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={root}",
        "--data.init_args.num_classes=3",
        "--data.init_args.img_size=32",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=4",
        "--data.init_args.val_fraction=0.25",
    ]


COMMON = [
    "--trainer.accelerator=cpu",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--name=bad",
]


# -- builders of bad files ---------------------------------------------------------------------


def copy_fmnist(tmp: Path, data: Path) -> Path:
    target = tmp / "fmnist_copy"
    if not target.exists():
        write_fashion_mnist(target)
    return target


def truncated_idx(tmp: Path, data: Path) -> list[str]:
    folder = copy_fmnist(tmp, data)
    path = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return [f"--data.init_args.data_dir={folder}"]


def labels_out_of_range(tmp: Path, data: Path) -> list[str]:
    folder = copy_fmnist(tmp, data)
    path = folder / "train-labels-idx1-ubyte.gz"
    labels = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8, offset=8).copy()
    labels[0] = 12
    write_idx(path, labels)
    return [f"--data.init_args.data_dir={folder}"]


def missing_idx_file(tmp: Path, data: Path) -> list[str]:
    folder = copy_fmnist(tmp, data)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    return [f"--data.init_args.data_dir={folder}"]


def image_folder(tmp: Path) -> Path:
    return write_image_folder(tmp / "images", classes=3, per_class=4, size=32)


def corrupt_image(tmp: Path, data: Path) -> list[str]:
    root = image_folder(tmp)
    (root / "train" / "class_1" / "img_2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    return []


def in_folder(*values: str) -> Callable[[Path, Path], list[str]]:
    """The ``values`` over a valid image folder."""

    def build(tmp: Path, data: Path) -> list[str]:
        image_folder(tmp)
        return list(values)

    return build


def wrong_class_count(tmp: Path, data: Path) -> list[str]:
    image_folder(tmp)
    return ["--data.init_args.num_classes=5"]


def missing_split(tmp: Path, data: Path) -> list[str]:
    root = write_image_folder(tmp / "images", classes=3, per_class=2, size=32, splits=("train",))
    return [f"--data.init_args.data_dir={root}"]


def tiny_weights(tmp: Path, kwargs: dict, num_classes: int = 10) -> Path:
    vit = create_vit(
        "vit_tiny_patch16_224",
        num_classes=num_classes,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=kwargs,
    )
    return save_vit_weights(vit, tmp / "other.safetensors", {"model_kwargs": kwargs})


def weights_other_arch(tmp: Path, data: Path) -> list[str]:
    return [f"--model.weights={tiny_weights(tmp, {**TINY, 'embed_dim': 32})}"]


def weights_not_safetensors(tmp: Path, data: Path) -> list[str]:
    path = tmp / "garbage.safetensors"
    path.write_bytes(b"this is not a safetensors file")
    return [f"--model.weights={path}"]


def tiny_module(num_classes: int) -> ViTClassifier:
    return ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=num_classes,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=TINY,
    )


def ckpt_text_file(tmp: Path, data: Path) -> list[str]:
    path = tmp / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    return [f"--ckpt_path={path}"]


def ckpt_without_state(tmp: Path, data: Path) -> list[str]:
    path = tmp / "weights_only.ckpt"
    torch.save({"epoch": 3}, path)
    return [f"--ckpt_path={path}"]


def ckpt_with_code(tmp: Path, data: Path) -> list[str]:
    path = tmp / "pickled.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, path)  # an arbitrary object: unpickling
    return [f"--ckpt_path={path}"]


def ckpt_other_classes(tmp: Path, data: Path) -> list[str]:
    path = tmp / "seven_classes.ckpt"
    torch.save(
        {"state_dict": tiny_module(7).state_dict(), "pytorch-lightning_version": "2.6.6"}, path
    )
    return [f"--ckpt_path={path}"]


def bad_corruption_npy(tmp: Path, data: Path) -> list[str]:
    folder = tmp / "cifar_c"
    folder.mkdir()
    np.save(folder / "contrast.npy", np.zeros((10, 32, 32), np.uint8))
    np.save(folder / "labels.npy", np.zeros(10, np.int64))
    suite = tmp / "corruptions.yaml"
    suite.write_text(
        "trainer:\n  inference_mode: false\n  callbacks+:\n"
        "    - class_path: callbacks.CorruptionEval\n      init_args:\n"
        f"        data_dir: {folder}\n        corruptions: [contrast]\n"
    )
    return ["--config", str(suite)]


def export_over_existing(tmp: Path, data: Path) -> list[str]:
    earlier = tmp / "work" / "artifacts" / "earlier.safetensors"
    return [
        "--config",
        str(EXPERIMENTS / "pretrain.yaml"),
        f"--trainer.callbacks.init_args.path={earlier}",
    ]


def method(name: str, *overrides: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, data: [
        "--config",
        str(METHODS / f"{name}.yaml"),
        *(f"--model.method.init_args.{o}" for o in overrides),
    ]


def args(*values: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, data: list(values)


def cpu_suite(*values: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, data: ["--config", str(EXPERIMENTS / "eval" / "cpu.yaml"), *values]


def analysis(*values: str) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, data: ["--config", str(EXPERIMENTS / "analysis" / "nullspace.yaml"), *values]


ATTACK_YAML = (
    "trainer:\n  inference_mode: false\n  callbacks+:\n"
    "    - class_path: callbacks.AdversarialEval\n      init_args:\n"
    "        epsilons: {epsilons}\n"
    "        attacks:\n          - class_path: robust_vit.attacks.PGD\n"
    "            init_args: {{eps: {eps}, steps: 2, restarts: {restarts}}}\n"
)


def attack_eps(
    eps: float, epsilons: list[float] | None = None, restarts: int = 1
) -> Callable[[Path, Path], list[str]]:
    def build(tmp: Path, data: Path) -> list[str]:
        suite = tmp / "attack.yaml"
        suite.write_text(
            ATTACK_YAML.format(eps=eps, epsilons=json.dumps(epsilons), restarts=restarts)
        )
        return ["--config", str(suite)]

    return build


NO_CREDENTIALS = {"WANDB_MODE": "online", "WANDB_API_KEY": None}


def model_kwargs(**changes: object) -> Callable[[Path, Path], list[str]]:
    """The tiny model with ``changes`` to its ``model_kwargs``."""
    return args(f"--model.model_kwargs={json.dumps({**TINY, **changes})}")


def malformed_yaml(tmp: Path, data: Path) -> list[str]:
    path = tmp / "broken.yaml"
    path.write_text("model:\n  model_name: [unclosed\n")
    return ["--config", str(path)]


def malformed_plan(tmp: Path, data: Path) -> list[str]:
    path = tmp / "broken_plan.yaml"
    path.write_text("methods: [erm\nseeds: [0]\n")
    return ["show", str(path)]


def plan_not_a_mapping(tmp: Path, data: Path) -> list[str]:
    path = tmp / "list_plan.yaml"
    path.write_text("- erm\n- anf\n")
    return ["show", str(path)]


def record(text: str) -> Callable[[Path, Path], list[str]]:
    """A ``results.json`` holding ``text``, given to ``robust-vit report``."""

    def build(tmp: Path, data: Path) -> list[str]:
        path = tmp / "records" / "results.json"
        path.parent.mkdir()
        path.write_text(text)
        return [str(path)]

    return build


def weights_pth_garbage(tmp: Path, data: Path) -> list[str]:
    path = tmp / "garbage.pth"
    path.write_bytes(b"not a torch file")
    return [f"--model.weights={path}"]


def weights_unrelated_tensors(tmp: Path, data: Path) -> list[str]:
    path = tmp / "unrelated.pth"
    torch.save({"x": torch.zeros(1), "head.weight": torch.zeros(10, 16)}, path)
    return [f"--model.weights={path}"]


# Every optimizer a config may name, and the arguments torch requires to be >= 0: each pair
# is one row, so an optimizer added here is covered for all of its arguments by construction.
OPTIMIZERS = (torch.optim.AdamW, torch.optim.SGD)
NON_NEGATIVE = ("lr", "eps", "weight_decay", "momentum")


def optimizer_rows() -> list[Case]:
    rows = []
    for optimizer in OPTIMIZERS:
        accepted = inspect.signature(optimizer).parameters
        for name in (n for n in NON_NEGATIVE if n in accepted):
            rows.append(
                Case(
                    f"{optimizer.__name__} {name} negative",
                    args(
                        f"--model.optimizer=torch.optim.{optimizer.__name__}",
                        f"--model.optimizer.init_args.{name}=-1",
                    ),
                    f"model.optimizer.init_args.{name}",
                    f"Choose a value {optimizer.__name__} accepts",
                )
            )
    return rows


def scheduler(name: str, *values: str) -> Callable[[Path, Path], list[str]]:
    """The torch scheduler ``name`` with ``values`` as its ``init_args``."""
    return args(
        f"--model.lr_scheduler=torch.optim.lr_scheduler.{name}",
        *(f"--model.lr_scheduler.init_args.{v}" for v in values),
    )


# One list per kind of option or file: a new option of a kind gets the kind's row(s).
CLASSES: dict[str, list[Case]] = {
    "model choice": [
        Case(
            "unknown timm model",
            args("--model.model_name=vit_does_not_exist"),
            "model.model_name",
            "timm.list_models",
        ),
        Case(
            "not a ViT (resnet18)",
            args("--model.model_name=resnet18", "--model.model_kwargs={}"),
            "model.model_name",
            "vit_",
        ),
        Case(
            "ANF on a model without patch embedding",
            lambda tmp, data: [
                *method("anf")(tmp, data),
                "--model.model_name=mixer_s16_224",
                "--model.patch_size=null",
                "--model.model_kwargs={}",
            ],
            "model.model_name",
            "space=image",
        ),
        Case(
            "model_kwargs repeats a linked field",
            model_kwargs(img_size=64),
            "model.model_kwargs.img_size",
            "Remove it from model_kwargs",
        ),
    ],
    "model geometry": [
        Case("patch size 0", args("--model.patch_size=0"), "model.patch_size: 0", "v>0"),
        Case(
            "patch that does not tile the image (cropped before)",
            args("--model.patch_size=5"),
            "model.patch_size",
            "divisor of 32",
        ),
        Case(
            "patch larger than the image",
            args("--model.patch_size=64"),
            "model.patch_size",
            "divisor of 32",
        ),
        Case(
            "embed_dim not a multiple of num_heads",
            model_kwargs(embed_dim=15),
            "model.model_kwargs",
            "multiple of num_heads",
        ),
        Case("depth 0", model_kwargs(depth=0), "model.model_kwargs", "depth to at least 1"),
        Case("depth negative", model_kwargs(depth=-1), "model.model_kwargs", "at least 1"),
        Case("num_heads 0", model_kwargs(num_heads=0), "model.model_kwargs", "at least 1"),
        Case(
            "num_heads negative",
            model_kwargs(num_heads=-2),
            "model.model_kwargs",
            "num_heads to at least 1",
        ),
        Case("embed_dim negative", model_kwargs(embed_dim=-16), "model.model_kwargs", "at least 1"),
        Case(
            "mlp_ratio 0 (timm used its default width before)",
            model_kwargs(mlp_ratio=0),
            "model.model_kwargs.mlp_ratio",
            "at least",
        ),
        Case(
            "drop path rate 1",
            args("--model.drop_path_rate=1.0"),
            "model.drop_path_rate: 1.0",
            "v<1",
        ),
        Case("negative normalisation std", args("--model.std=[-1.0]"), "model.std: -1.0", "v>0"),
    ],
    "optimizer hyperparameter": [
        *optimizer_rows(),
        Case(
            "AdamW beta above 1",
            args("--model.optimizer.init_args.betas=[1.5, 0.9]"),
            "model.optimizer.init_args.betas",
            "Choose a value AdamW accepts",
        ),
        Case(
            "SGD nesterov without momentum",
            args("--model.optimizer=torch.optim.SGD", "--model.optimizer.init_args.nesterov=true"),
            "model.optimizer.init_args.nesterov",
            "requires a momentum",
        ),
    ],
    "scheduler hyperparameter": [
        Case(
            "schedule warm-up fraction above 1",
            args("--model.lr_scheduler.init_args.warmup_fraction=2"),
            "model.lr_scheduler.init_args.warmup_fraction: 2",
            "v>=0 and v<=1",
        ),
        Case(
            "StepLR gamma negative (a negative learning rate)",
            scheduler("StepLR", "step_size=1", "gamma=-1"),
            "model.lr_scheduler.init_args.gamma",
            "learning rate to -",
        ),
        Case(
            "LinearLR start factor above 1",
            scheduler("LinearLR", "start_factor=2"),
            "model.lr_scheduler.init_args.start_factor",
            "Choose a value LinearLR accepts",
        ),
        Case(
            "CosineAnnealingLR T_max 0",
            scheduler("CosineAnnealingLR", "T_max=0"),
            "model.lr_scheduler",
            "CosineAnnealingLR accepts",
        ),
        Case(
            "OneCycleLR without its length",
            scheduler("OneCycleLR", "max_lr=0.1"),
            "model.lr_scheduler",
            "total_steps",
        ),
    ],
    "method hyperparameter": [
        Case(
            "PGD-AT eps negative",
            method("pgd_at", "eps=-0.01"),
            f"{METHOD}.eps: -0.01",
            "v>=0 and v<=1",
        ),
        Case(
            "PGD-AT eps above 1",
            method("pgd_at", "eps=1.5"),
            f"{METHOD}.eps: 1.5",
            "v>=0 and v<=1",
        ),
        Case(
            "TRADES alpha above 1",
            method("trades", "alpha=2.0"),
            f"{METHOD}.alpha: 2.0",
            "v>=0 and v<=1",
        ),
        Case("SAFER eps negative", method("safer", "eps=-0.1"), f"{METHOD}.eps: -0.1", "v>=0"),
        Case(
            "SAFER fraction 0",
            method("safer", "fraction=0"),
            f"{METHOD}.fraction: 0",
            "v>0 and v<=1",
        ),
        Case(
            "SAFER fraction above 1",
            method("safer", "fraction=1.5"),
            f"{METHOD}.fraction: 1.5",
            "v>0 and v<=1",
        ),
        Case("SAFER k above the candidates", method("safer", "k=1000"), "init_args.k", "lower k"),
        Case("ANF eps zero", method("anf", "eps=0"), f"{METHOD}.eps: 0", "v>0 and v<=2"),
        Case(
            "ERM label smoothing above 1",
            method("erm", "label_smoothing=1.5"),
            f"{METHOD}.label_smoothing: 1.5",
            "v>=0 and v<=1",
        ),
        Case(
            "unknown method option",
            method("erm", "no_such_option=1"),
            "no_such_option",
            "no_such_option",
        ),
    ],
    "evaluation option": [
        Case("attack eps negative", attack_eps(-0.1), f"{ATTACKS}.eps: -0.1", "v>=0", "test"),
        Case("attack L-inf eps above 1", attack_eps(1.5), "adversarial.attacks", "eps", "test"),
        Case(
            "eval epsilons negative",
            attack_eps(0.01, [-0.1]),
            f"{CALLBACK}.epsilons: -0.1",
            "v>=0",
            "test",
        ),
        Case(
            "eval epsilons above 1",
            attack_eps(0.01, [0.01, 2.0]),
            "adversarial.attacks",
            "8/255",
            "test",
        ),
        Case(
            "PGD restarts 0",
            attack_eps(0.01, restarts=0),
            f"{ATTACKS}.restarts: 0",
            "v>0",
            "test",
        ),
        Case(
            "attack eval with inference mode on",
            cpu_suite("--trainer.inference_mode=true"),
            "trainer.inference_mode",
            "inference_mode: false",
            "test",
        ),
        Case(
            "corruption eval batch size 0",
            cpu_suite("--trainer.callbacks.init_args.batch_size=0"),
            f"{CALLBACK}.batch_size: 0",
            "v>0",
            "test",
        ),
        Case(
            "nullspace analysis on 0 images",
            analysis("--trainer.callbacks.init_args.num_images=0"),
            f"{CALLBACK}.num_images: 0",
            "v>0",
        ),
    ],
    "data option": [
        Case(
            "validation fraction above 0.5",
            args("--data.init_args.val_fraction=0.9"),
            "data.init_args.val_fraction: 0.9",
            "v<=0.5",
        ),
        Case(
            "batch size 0",
            args("--data.init_args.batch_size=0"),
            "data.init_args.batch_size: 0",
            "v>0",
        ),
        Case(
            "two input channels",
            args("--data.init_args.in_chans=2"),
            "data.init_args.in_chans: 2 is not one of 1, 3",
            "Literal",
        ),
        Case(
            "limit_train 0",
            args("--data.init_args.limit_train=0"),
            "data.init_args.limit_train: 0",
            "v>0",
        ),
        Case(
            "limit_train below one batch",
            args("--data.init_args.limit_train=5"),
            "data.batch_size",
            "train on nothing",
        ),
        Case(
            "validation split rounds to no example",
            args("--data.init_args.limit_train=100", "--data.init_args.val_fraction=0.001"),
            "data.val_fraction",
            "validate on nothing",
        ),
        Case(
            "num_workers negative",
            args("--data.init_args.num_workers=-1"),
            "data.init_args.num_workers: -1",
            "v>=0",
        ),
        Case(
            "image folder crop fraction 0",
            in_folder("--data.init_args.crop_fraction=0"),
            "data.init_args.crop_fraction: 0",
            "v>0 and v<=1",
            base="folder",
        ),
        Case(
            "num_classes disagrees with the folders",
            wrong_class_count,
            "data.num_classes",
            "class folders",
            base="folder",
        ),
    ],
    "data file": [
        Case(
            "missing data directory",
            args("--data.init_args.data_dir=/no/such/dir"),
            "data.data_dir",
            "directory",
        ),
        Case(
            "data directory without the idx files",
            missing_idx_file,
            "data.data_dir",
            "idx files",
        ),
        Case("truncated idx file", truncated_idx, "train-images-idx3-ubyte", "re-fetch"),
        Case("labels out of range", labels_out_of_range, "data.data_dir", "re-fetch"),
        Case(
            "corrupt image in an image folder",
            corrupt_image,
            "img_2.png",
            "remove or replace",
            base="folder",
        ),
        Case(
            "image folder without its val split",
            missing_split,
            "data.data_dir",
            "expected",
            base="folder",
        ),
        Case(
            "corruption .npy of the wrong shape",
            bad_corruption_npy,
            "contrast.npy",
            "expected uint8",
            "test",
        ),
    ],
    "YAML config file": [
        Case("malformed YAML", malformed_yaml, "broken.yaml", "Fix it at the line shown"),
        Case(
            "missing config file",
            args("--config=/no/such/config.yaml"),
            "/no/such/config.yaml",
            "does not exist",
        ),
    ],
    "sweep plan file": [
        Case("malformed plan YAML", malformed_plan, "broken_plan.yaml", "Fix it there", "sweep"),
        Case(
            "plan that is not a mapping",
            plan_not_a_mapping,
            "list_plan.yaml",
            "mapping of plan fields",
            "sweep",
        ),
        Case(
            "missing plan",
            args("show", "no_such_plan"),
            "no_such_plan",
            "Name a plan",
            "sweep",
        ),
    ],
    "weights file": [
        Case(
            "weights of another architecture",
            weights_other_arch,
            "model.weights",
            "model_kwargs the file was trained with",
        ),
        Case(
            "missing weights file",
            args("--model.weights=/no/such/file.safetensors"),
            "model.weights",
            "make pretrain",
        ),
        Case(
            "weights file that is not safetensors",
            weights_not_safetensors,
            "model.weights",
            "safetensors",
        ),
        Case(
            "weights .pth that is not a torch file",
            weights_pth_garbage,
            "garbage.pth",
            "model_kwargs the file was trained with",
        ),
        Case(
            "weights .pth of unrelated tensors",
            weights_unrelated_tensors,
            "unrelated.pth' lacks",
            "model_kwargs the file was trained with",
        ),
        Case(
            "export over an existing weights file",
            export_over_existing,
            "ExportWeights.path",
            "overwrite",
        ),
    ],
    "checkpoint file": [
        Case("ckpt_path missing", args("--ckpt_path=/no/such/last.ckpt"), "ckpt_path", "last"),
        Case("ckpt_path a text file", ckpt_text_file, "ckpt_path", "Lightning checkpoint"),
        Case(
            "ckpt_path without a state_dict",
            ckpt_without_state,
            "ckpt_path",
            "Lightning checkpoint",
        ),
        Case("ckpt_path that needs unpickling code", ckpt_with_code, "ckpt_path", "weights_only"),
        Case(
            "ckpt_path with another num_classes",
            ckpt_other_classes,
            "ckpt_path",
            "head.weight",
            "test",
        ),
    ],
    "record file": [
        Case("record that is not JSON", record("{not json"), "results.json", "rerun", "report"),
        Case(
            "record that is not a mapping of sections",
            record("[1, 2]"),
            "results.json",
            "rerun",
            "report",
        ),
    ],
    "run option": [
        Case(
            "unknown config key",
            args("--model.no_such_option=1"),
            "no_such_option",
            "model.no_such_option",
        ),
        Case("threads negative", args("--threads=-3"), "threads: -3", "v>0"),
        Case("threads 0", args("--threads=0"), "threads: 0", "v>0"),
        Case(
            "wandb online without credentials",
            args(),
            "trainer.logger",
            "wandb login",
            env=NO_CREDENTIALS,
        ),
    ],
}
# Commands that take their own arguments, not a run's configs.
TOOLS = ("sweep", "report")
CASES = [(kind, case) for kind, cases in CLASSES.items() for case in cases]


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def forward_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the input normalisation, which every forward pass (ANF's too) makes."""
    calls: list[int] = []
    original = NormalizedViT.normalize

    def counted(self: NormalizedViT, x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return original(self, x)

    monkeypatch.setattr(NormalizedViT, "normalize", counted)
    return calls


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}: {c.name}" for k, c in CASES])
def test_bad_input_fails_before_compute(
    kind: str,
    case: Case,
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    forward_calls: list[int],
) -> None:
    work = tmp_path / "work"
    earlier = work / "runs" / "bad" / "version_0"
    earlier.mkdir(parents=True)
    (earlier / "results.json").write_text('{"test": {"metrics": {"test/acc": 0.5}}}\n')
    (earlier / "metrics.csv").write_text("epoch,step,val/acc\n0,10,0.5\n")
    save_vit_weights(tiny_module(10).model.vit, work / "artifacts" / "earlier.safetensors", {})
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    for key, value in (case.env or {}).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    extra = case.args(tmp_path, fmnist_dir)
    base = folder_base(tmp_path / "images") if case.base == "folder" else fmnist_base(fmnist_dir)
    tool = case.subcommand in TOOLS
    before = snapshot(work)

    with pytest.raises(SystemExit) as exit_info:
        main([case.subcommand, *extra] if tool else [case.subcommand, *base, *COMMON, *extra])

    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert case.field in err, err
    assert case.fix in err, err
    assert not forward_calls, "a forward pass ran before the error"
    after = snapshot(work)
    assert {k: after[k] for k in before} == before, "an existing file changed"
    new = set(after) - set(before)
    assert not [p for p in new if p.endswith(".ckpt")], new
    assert not [p for p in new if p.endswith("metrics.csv")], new
