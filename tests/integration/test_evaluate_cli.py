"""``robust-vit evaluate``: a model that exists, tested under a protocol preset with no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from application.cli import main
from application.evaluate import PROTOCOLS_DIR, evaluate_argv, parser
from callbacks.adversarial_examples import read_adversarial_examples
from lightning_modules import ViTClassifier
from robust_vit.models import state_digest
from robust_vit.outcomes import read_outcomes
from tests.conftest import EXPERIMENTS, TINY_MODEL
from tests.integration.test_cli import CPU_BASE, tiny_overrides

PRESETS = sorted(p.stem for p in PROTOCOLS_DIR.glob("*.yaml"))
EXAMPLES = 20


def run_tail(fmnist_dir: Path) -> list[str]:
    """What a user adds after ``--`` here: the data's folder, the CPU, a short suite."""
    return [
        f"--data.init_args.data_dir={fmnist_dir}",
        "--data.init_args.batch_size=50",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.callbacks.init_args.num_examples={EXAMPLES}",
    ]


@pytest.fixture
def trained(tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two steps of ERM on the tiny ViT (upscaled images): its last checkpoint and the same
    weights exported."""
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *CPU_BASE,
            *tiny_overrides(fmnist_dir),
            "--data.init_args.upscale=true",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--name=trained",
            "--trainer.callbacks+=callbacks.ExportWeights",
            f"--trainer.callbacks.path={tmp_path / 'tiny.safetensors'}",
        ]
    )
    return tmp_path


def evaluated(root: Path, name: str) -> tuple[dict, dict, Path]:
    """The run's record, its model card and its folder."""
    (record_file,) = (root / "runs" / "evaluate" / name).rglob("results.json")
    card = json.loads((record_file.parent / "model_info.json").read_text())
    return json.loads(record_file.read_text()), card, record_file.parent


def test_a_checkpoint_and_its_exported_weights_evaluate_alike(
    trained: Path, fmnist_dir: Path
) -> None:
    (ckpt,) = (trained / "runs" / "trained").rglob("last.ckpt")
    weights = trained / "tiny.safetensors"
    for model, name in ((ckpt, "from_ckpt"), (weights, "from_weights")):
        main(["evaluate", str(model), "--data", "fashion_mnist", "--name", f"evaluate/{name}",
              "--", *run_tail(fmnist_dir)])  # fmt: skip
    (fit_record,) = (trained / "runs" / "trained").rglob("results.json")
    trained_digest = json.loads(fit_record.read_text())["fit"]["weights_sha256"]
    outcomes = {}
    for name in ("from_ckpt", "from_weights"):
        record, card, folder = evaluated(trained, name)
        assert record["test"]["weights_sha256"] == trained_digest  # the trained weights, tested
        section = record["adversarial"]["test"]
        assert record["protocol"]["name"] == "quick" and record["protocol"]["versions_match"]
        assert card["protocol"] == "quick" and card["number_of_examples"] == EXAMPLES
        assert card["threat_model"] == "Linf" and card["eps"] == "8/255"
        assert card["clean_acc"] == f"{100 * section['clean']['acc']:.2f}"
        assert card["worst_case_acc"] == f"{100 * section['worst_case']['linf@8/255']['acc']:.2f}"
        assert card["architecture"] == "vit_tiny_patch16_224" and card["autoattack_acc"] is None
        assert record["protocol"]["model_card"] == card
        assert record["run"]["config"]["data"]["init_args"]["upscale"]  # as it trained
        outcomes[name] = read_outcomes(folder / section["per_example"]["file"])
    assert torch.equal(outcomes["from_ckpt"].index, outcomes["from_weights"].index)
    for column, bits in outcomes["from_ckpt"].correct.items():
        assert torch.equal(bits, outcomes["from_weights"].correct[column]), column
    card = evaluated(trained, "from_ckpt")[1]
    assert card["weights"].endswith("last.ckpt")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_resolves_to_a_test_command(preset: str, tmp_path: Path) -> None:
    ns = parser().parse_args(["vit_small_patch16_224", "--data", "cifar10", "--protocol", preset])
    argv = evaluate_argv(ns, ["--trainer.devices=2"])
    assert argv[0] == "test" and argv[-1] == "--trainer.devices=2"
    configs = [argv[i + 1] for i, a in enumerate(argv) if a == "--config"]
    assert configs[0] == str(EXPERIMENTS / "base.yaml")
    assert configs[-1] == str(PROTOCOLS_DIR / f"{preset}.yaml")
    assert "--model.model_name=vit_small_patch16_224" in argv
    assert "--model.pretrained=true" in argv
    assert f"--name=evaluate/{preset}/vit_small_patch16_224" in argv


def test_bad_inputs_are_named_before_any_compute(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = trained / "tiny.safetensors"
    bare = trained / "bare.safetensors"
    save_file({"w": torch.zeros(1)}, str(bare))
    cases = {
        "--protocol": [str(weights), "--data", "fashion_mnist", "--protocol", "leaderboard"],
        "--data": [str(weights), "--data", "mnist"],
        "MODEL": [str(trained / "missing.ckpt"), "--data", "fashion_mnist"],
        "--model_name": [str(bare), "--data", "fashion_mnist"],
        "num_classes": [str(weights), "--data", "cifar100"],
    }
    errors = {}
    for field, argv in cases.items():
        with pytest.raises(SystemExit) as info:
            main(["evaluate", *argv])
        assert info.value.code == 2
        errors[field] = capsys.readouterr().err
        assert "robust-vit: error:" in errors[field]
    for field in ("--protocol", "--data", "MODEL", "--model_name"):
        assert field in errors[field]
    assert all(preset in errors["--protocol"] for preset in PRESETS)
    assert "10-class head" in errors["num_classes"] and "100 classes" in errors["num_classes"]
    assert not (trained / "runs" / "evaluate").exists()


def test_saved_adversarial_examples_reproduce_the_logged_accuracy(
    trained: Path, fmnist_dir: Path
) -> None:
    weights = trained / "tiny.safetensors"
    main(["evaluate", str(weights), "--data", "fashion_mnist", "--save_adversarial",
          "--name", "evaluate/saved", "--", *run_tail(fmnist_dir)])  # fmt: skip
    record, _, folder = evaluated(trained, "saved")
    section = record["adversarial"]["test"]
    (name,) = section["adversarial_examples"]
    columns, tensors = read_adversarial_examples(folder / name)
    assert columns == ["pgd20_linf@8/255", "apgd-ce_linf@8/255"]
    assert torch.equal(tensors["index"], torch.arange(EXAMPLES))
    model = ViTClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        model_kwargs=json.loads(TINY_MODEL),
        weights=str(weights),
    ).eval()
    for column in columns:
        x_adv = tensors[f"x_adv:{column}"]
        assert x_adv.dtype == torch.float32 and 0 <= x_adv.min() and x_adv.max() <= 1
        with torch.no_grad():
            correct = model(x_adv).argmax(-1) == tensors["label"]
        assert torch.equal(correct, tensors[f"robust:{column}"])
        attack, radius = column.split("@")
        assert correct.float().mean().item() == pytest.approx(
            section["attacks"][attack][f"linf@{radius}"]["acc"], abs=1e-9
        )


def test_a_checkpoint_of_a_method_with_state_evaluates(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ANF's checkpoint holds its noise; a test of its weights needs none of it."""
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            *CPU_BASE,
            *tiny_overrides(fmnist_dir),
            "--config",
            str(EXPERIMENTS / "method" / "anf.yaml"),
            "--model.method.init_args.max_synthesis_steps=2",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--name=anf",
        ]
    )
    (ckpt,) = (tmp_path / "runs" / "anf").rglob("last.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(key.startswith("method.") for key in state)
    main(["evaluate", str(ckpt), "--data", "fashion_mnist", "--name", "evaluate/anf",
          "--", *run_tail(fmnist_dir)])  # fmt: skip
    weights = {key: value for key, value in state.items() if not key.startswith("method.")}
    record = evaluated(tmp_path, "anf")[0]
    assert record["test"]["weights_sha256"] == state_digest(weights)  # the model it trained
