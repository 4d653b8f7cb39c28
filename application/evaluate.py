"""``robust-vit evaluate MODEL --data DATA [--protocol P]``: evaluate a model, with no training.

``MODEL`` is one of:
- a Lightning checkpoint of this framework (``.ckpt``): its hyperparameters give the architecture,
  its datamodule state the image geometry;
- a weights file (``.safetensors``, ``.pth``): the architecture and the image geometry come from
  the metadata that ``callbacks.ExportWeights`` writes, or from ``--model_name`` (and
  ``--img_size``, ``--upscale``);
- a timm name (``vit_small_patch16_224.augreg_in21k``) or an ``hf-hub:org/name``: its pretrained
  weights from the Hugging Face cache (``robust-vit prefetch`` fills it).

``DATA`` is a data YAML or a name in ``experiments/data/`` (``cifar10``); ``P`` a protocol preset
in ``experiments/protocols/`` (``quick``, ``robustbench_cifar10_linf``, ``robustbench_cifar10_l2``,
``robustbench_imagenet_linf``) or a YAML path. The command is LightningCLI's ``test`` with
``experiments/base.yaml``, the data, the model's arguments and the preset, in that order; anything
after ``--`` is added last (``-- --trainer.devices 2 --trainer.strategy ddp`` shards the attacks
over two processes). The record names the preset and ``model_info.json`` is written beside it.

Models take images in [0, 1]: the data gives them so, and the model wrapper normalises them with
its own mean and std (a checkpoint's or weights file's, else the timm model's pretrained config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from robust_vit.errors import ConfigError
from robust_vit.models import read_weights_header

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PROTOCOLS_DIR = EXPERIMENTS / "protocols"
DATA_DIR = EXPERIMENTS / "data"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# The architecture options a checkpoint or a weights file's metadata carries (ViTClassifier's).
MODEL_OPTIONS = ("model_name", "patch_size", "model_kwargs", "mean", "std")
# The data geometry the weights were trained with (a datamodule's ``geometry()``).
DATA_OPTIONS = ("img_size", "in_chans", "upscale")


def named_yaml(value: str, folder: Path, field: str, what: str) -> Path:
    """``value`` as a YAML path, or as the name of one in ``folder``; else an error naming them."""
    path = Path(value) if value.endswith((".yaml", ".yml")) else folder / f"{value}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(
            field,
            f"no {what} file {path}. Name one in {folder}/ ({known or 'none found here'}) or "
            f"give a {what} YAML's path.",
        )
    return path


def preset_path(protocol: str) -> Path:
    """The YAML of ``protocol``: a file path, or a preset's name in ``experiments/protocols/``."""
    return named_yaml(protocol, PROTOCOLS_DIR, "--protocol", "protocol")


def data_path(data: str) -> Path:
    """The YAML of ``data``: a file path, or a name in ``experiments/data/``."""
    return named_yaml(data, DATA_DIR, "--data", "data")


def option_args(values: dict[str, Any]) -> list[str]:
    """``--model.<k>`` / ``--data.init_args.<k>`` arguments for the architecture's values."""
    args = []
    for key, value in values.items():
        if value is None or (key == "upscale" and not value):  # not upscaling is every default
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        prefix = "--data.init_args" if key in DATA_OPTIONS else "--model"
        args.append(f"{prefix}.{key}={text}")
    return args


def check_classes(model: str, classes: Any, data: Path) -> None:
    """Fail before any compute when the model's head and the data's classes differ."""
    init = (yaml.safe_load(data.read_text()) or {}).get("data", {}).get("init_args", {})
    wanted = init.get("num_classes")
    if classes is not None and wanted is not None and int(classes) != int(wanted):
        raise ConfigError(
            "--data",
            f"{model!r} has a {classes}-class head, {data} has {wanted} classes: evaluate it on "
            "the data it was trained for.",
        )


def checkpoint_args(path: Path) -> tuple[list[str], Any]:
    """The arguments that rebuild a checkpoint's model and test its weights (``--ckpt_path``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            "MODEL",
            f"{str(path)!r} does not load as a Lightning checkpoint with weights_only=True "
            f"({str(err).splitlines()[-1][:200]}).",
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model_name" not in hparams:
        raise ConfigError(
            "MODEL",
            f"{str(path)!r} has no ViTClassifier hyperparameters: it is not a checkpoint of this "
            "framework. Give a weights file with --model_name instead.",
        )
    data_state = next(
        (v for v in checkpoint.values() if isinstance(v, dict) and "data_seed" in v), {}
    )
    wanted = {k: data_state.get(k, hparams.get(k)) for k in (*MODEL_OPTIONS, *DATA_OPTIONS)}
    args = [
        *option_args(wanted),
        "--model.pretrained=false",
        "--model.weights=null",
        f"--ckpt_path={path}",
    ]
    return args, hparams.get("num_classes")


def weights_args(path: Path, model_name: str | None, img_size: int | None) -> tuple[list[str], Any]:
    """The arguments that build the architecture of a weights file and load it."""
    metadata: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        try:
            metadata = read_weights_header(path)["metadata"]
        except Exception as err:
            raise ConfigError(
                "MODEL", f"{str(path)!r} is not a readable safetensors file ({err})."
            ) from err
    wanted = {k: metadata.get(k) for k in (*MODEL_OPTIONS, *DATA_OPTIONS)}
    if model_name is not None:
        wanted["model_name"] = model_name
    if img_size is not None:
        wanted["img_size"] = img_size
    if wanted["model_name"] is None:
        raise ConfigError(
            "--model_name",
            f"{str(path)!r} does not say its architecture (no robust-vit metadata): give the "
            "timm name it was saved from, e.g. --model_name vit_small_patch16_224.",
        )
    args = [*option_args(wanted), "--model.pretrained=false", f"--model.weights={path}"]
    return args, metadata.get("num_classes")


def model_args(model: str, model_name: str | None, img_size: int | None) -> tuple[list[str], Any]:
    """The LightningCLI arguments that build ``MODEL``, whichever kind it is, and its classes.

    The classes are the head's where the file says them (None for a timm or hf-hub name).
    """
    path = Path(model)
    if path.suffix == ".ckpt" or path.suffix in WEIGHT_SUFFIXES:
        if not path.is_file():
            raise ConfigError("MODEL", f"{model!r} does not exist.")
        if path.suffix == ".ckpt":
            if model_name is not None:
                raise ConfigError(
                    "--model_name", "a checkpoint names its own architecture: drop --model_name."
                )
            return checkpoint_args(path)
        return weights_args(path, model_name, img_size)
    if model_name is not None:
        raise ConfigError(
            "--model_name", f"{model!r} is a timm or hf-hub name already: drop --model_name."
        )
    size = [] if img_size is None else [f"--data.init_args.img_size={img_size}"]
    args = [f"--model.model_name={model}", "--model.pretrained=true", "--model.weights=null"]
    return [*args, *size], None


def evaluate_argv(ns: argparse.Namespace, extra: list[str]) -> list[str]:
    """The ``robust-vit test`` command line of one evaluation."""
    protocol, data = preset_path(ns.protocol), data_path(ns.data)
    built, classes = model_args(ns.model, ns.model_name, ns.img_size)
    check_classes(ns.model, classes, data)
    name = ns.name or f"evaluate/{protocol.stem}/{Path(ns.model).stem or ns.model}"
    argv = [
        "test",
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(data),
        *built,
        "--config",
        str(protocol),
        f"--name={name}",
    ]
    if ns.upscale:
        argv.append("--data.init_args.upscale=true")
    if ns.threads is not None:
        argv.append(f"--threads={ns.threads}")
    if ns.save_adversarial:  # a preset's AdversarialEval is its last callback
        argv.append("--trainer.callbacks.init_args.save_adversarial=true")
    return [*argv, *extra]


def parser() -> argparse.ArgumentParser:
    """The command's options."""
    p = argparse.ArgumentParser(
        prog="robust-vit evaluate",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Arguments after -- go to `robust-vit test` as they are.",
    )
    p.add_argument("model", metavar="MODEL", help=".ckpt, weights file, timm or hf-hub: name")
    p.add_argument("--data", required=True, help="data YAML, or its name in experiments/data/")
    p.add_argument("--protocol", default="quick", help="preset name or protocol YAML")
    p.add_argument("--model_name", help="timm architecture of a weights file without metadata")
    p.add_argument("--img_size", type=int, help="input size, where the model and data differ")
    p.add_argument(
        "--upscale",
        action="store_true",
        help="resize the images to the input size instead of centre-padding them (what the "
        "model was trained on; a checkpoint or exported weights file says it itself)",
    )
    p.add_argument("--name", help="run name (default evaluate/<protocol>/<model>)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument(
        "--save_adversarial",
        action="store_true",
        help="write the adversarial examples as float tensors beside the record",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    """Build the test command line, print it, and run it."""
    args = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, extra = args[:cut], args[cut + 1 :]
    ns = parser().parse_args(args)
    try:
        command = evaluate_argv(ns, extra)
    except ConfigError as err:
        print(f"robust-vit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
    print("robust-vit " + " ".join(command))
    from application.lightning_cli import run

    run(command)
