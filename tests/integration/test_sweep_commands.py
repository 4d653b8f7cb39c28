"""Sweep plans through the real CLI: every planned command resolves, ``sweep run`` runs one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from application.cli import main
from application.sweeps import PLANS_DIR, expand, load_plan
from robust_vit.models import create_vit, save_vit_weights
from tests.conftest import EXPERIMENTS, REPO, TINY_MODEL

PLANS = sorted(p.stem for p in (REPO / PLANS_DIR).glob("*.yaml"))


def tiny_weights(path: Path) -> Path:
    """The tiny ViT's fresh weights for 1-channel 32 px images, saved at ``path``."""
    vit = create_vit(
        "vit_tiny_patch16_224",
        num_classes=10,
        img_size=32,
        in_chans=1,
        patch_size=8,
        model_kwargs=json.loads(TINY_MODEL),
    )
    return save_vit_weights(vit, path, {})


@pytest.mark.parametrize("name", PLANS)
def test_every_planned_command_resolves(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)  # the plans name configs relative to the repository root
    for run in expand(load_plan(name, {"threads": 1})):
        with pytest.raises(SystemExit) as exit_info:
            main([*run.argv[1:], "--print_config"])
        assert exit_info.value.code == 0, run.name
        config = yaml.safe_load(capsys.readouterr().out)
        assert (config["name"], config["group"], config["job_type"]) == (run.name, name, run.method)
        assert config["seed_everything"] == run.seed
        assert config["model"]["weights"] == str(run.weights)
        assert config["trainer"]["enable_progress_bar"] is False


def test_sweep_run_runs_its_entry_once_and_a_restart_skips_it(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    short = tmp_path / "short.yaml"  # the plan's evaluation: one batch of each stage
    short.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "max_epochs": 1,
                    "limit_train_batches": 1,
                    "limit_val_batches": 1,
                    "limit_test_batches": 1,
                    "accelerator": "cpu",
                    "enable_model_summary": False,
                }
            }
        )
    )
    (tmp_path / "experiments").symlink_to(EXPERIMENTS)  # plans run from the repository root
    plan = tmp_path / "tiny.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "configs": [
                    f"experiments/{n}"
                    for n in ("base.yaml", "data/fashion_mnist.yaml", "model/vit_cpu.yaml")
                ],
                "fit_configs": ["experiments/finetune.yaml"],
                "methods": ["erm", "anf"],
                "seeds": [3],
                "weights": str(weights),
                "eval": str(short),
            }
        )
    )
    stand_in = [
        "--",
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={fmnist_dir}",
        "--data.init_args.batch_size=8",
    ]
    monkeypatch.chdir(tmp_path)
    main(["sweep", "run", str(plan), "--method", "erm", "--seed", "3", *stand_in])
    (record,) = (tmp_path / "runs" / "tiny" / "erm" / "seed3").rglob("results.json")
    assert "test/acc" in json.loads(record.read_text())["test"]["metrics"]
    assert len(list((tmp_path / "runs" / "tiny" / "erm" / "seed3").glob(".done-*"))) == 1
    capsys.readouterr()
    main(["sweep", "run", str(plan), "--index", "0", *stand_in])
    assert "tiny/erm/seed3 finished" in capsys.readouterr().out
    assert len(list((tmp_path / "runs" / "tiny" / "erm" / "seed3").rglob("results.json"))) == 1
