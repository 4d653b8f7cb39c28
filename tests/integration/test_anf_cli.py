"""ANF and its baselines through the real CLI and YAMLs: a short run, and a resumed run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from application.cli import main
from tests.conftest import EXPERIMENTS
from tests.integration.test_cli import CPU_BASE, tiny_overrides

METHOD = "model.method.init_args"
SHORT = [
    f"--{METHOD}.max_synthesis_steps=3",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.log_every_n_steps=1",
]


def fit(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(cwd)
    main(["fit", *CPU_BASE, *args])


def every_step_checkpoints(tmp_path: Path, name: str) -> list[str]:
    """A YAML overlay saving ``<name>/step=<k>.ckpt`` after every step (``last.ckpt`` only moves
    when ``val/acc`` improves)."""
    overlay = tmp_path / f"{name}.yaml"
    overlay.write_text(
        "trainer:\n  callbacks+:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"      init_args: {{dirpath: {tmp_path / name}, every_n_train_steps: 1, save_top_k: -1, "
        "filename: '{step}'}\n"
    )
    return ["--config", str(overlay)]


def method_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("method."): v for k, v in state.items() if k.startswith("method.")}


def logged(run_dir: Path, key: str) -> list[float]:
    (metrics,) = run_dir.rglob("metrics.csv")
    with metrics.open() as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


@pytest.mark.parametrize("method", ["anf", "anf_random"])
def test_two_rounds_log_each_synthesis(
    method: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(
        [
            "--config",
            str(EXPERIMENTS / "method" / f"{method}.yaml"),
            *tiny_overrides(fmnist_dir),
            *SHORT,
            f"--{METHOD}.rounds=2",
            f"--{METHOD}.steps_per_round=2",
            "--trainer.max_epochs=2",
            f"--name={method}",
            *every_step_checkpoints(tmp_path, "steps"),
        ],
        tmp_path,
        monkeypatch,
    )
    run_dir = tmp_path / "runs" / method
    state = method_state(tmp_path / "steps" / "step=4.ckpt")
    assert state["current_round"] == 1
    assert state["noise"].shape == (1, 16, 16)  # (1, patches, embed_dim) of the tiny model
    assert logged(run_dir, "train/round") == [0.0, 0.0, 1.0, 1.0]
    norms = logged(run_dir, "train/noise_norm")
    assert norms[-1] == pytest.approx(float(state["noise"].norm()), rel=1e-5)
    assert all(0 <= s <= 3 for s in logged(run_dir, "train/synth_steps"))
    assert all(0 <= a <= 1 for a in logged(run_dir, "train/synth_agreement"))


def test_gaussian_noise_config_trains(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(
        [
            "--config",
            str(EXPERIMENTS / "method" / "gaussian_noise.yaml"),
            *tiny_overrides(fmnist_dir),
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.max_epochs=1",
            "--name=gauss",
        ],
        tmp_path,
        monkeypatch,
    )
    assert next((tmp_path / "runs" / "gauss").rglob("last.ckpt")).is_file()


def test_resume_continues_with_the_saved_noise_and_round(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [
        "--config",
        str(EXPERIMENTS / "method" / "anf.yaml"),
        *tiny_overrides(fmnist_dir),
        *SHORT,
        f"--{METHOD}.rounds=1",
        f"--{METHOD}.steps_per_round=4",
    ]
    fit(
        [*common, "--trainer.max_epochs=1", "--name=first", *every_step_checkpoints(tmp_path, "a")],
        tmp_path,
        monkeypatch,
    )
    first = tmp_path / "a" / "step=2.ckpt"
    # Another seed: a fresh synthesis would give another noise, a restored one keeps it.
    fit(
        [
            *common,
            "--trainer.max_epochs=2",
            f"--{METHOD}.seed=7",
            f"--ckpt_path={first}",
            "--name=resumed",
            *every_step_checkpoints(tmp_path, "b"),
        ],
        tmp_path,
        monkeypatch,
    )
    resumed = tmp_path / "b" / "step=4.ckpt"
    before, after = method_state(first), method_state(resumed)
    assert torch.load(resumed, weights_only=False)["global_step"] == 4
    assert after["current_round"] == before["current_round"] == 0
    torch.testing.assert_close(after["noise"], before["noise"], rtol=0, atol=0)
    torch.testing.assert_close(after["stats"], before["stats"], rtol=0, atol=0)


def test_nullspace_analysis_writes_table_plot_and_record(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(
        [
            "--config",
            str(EXPERIMENTS / "method" / "erm.yaml"),
            "--config",
            str(EXPERIMENTS / "analysis" / "nullspace.yaml"),
            *tiny_overrides(fmnist_dir),
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2",
            "--trainer.max_epochs=1",
            "--trainer.callbacks.init_args.max_steps=5",
            "--name=ns",
        ],
        tmp_path,
        monkeypatch,
    )
    (record_file,) = (tmp_path / "runs" / "ns").rglob("results.json")
    report = json.loads(record_file.read_text())["nullspace"]
    # The tiny model embeds 64 patch values in 16 dimensions.
    assert report["patch_dim"] == 64 and report["nullspace_dim"] == 64 - 16
    assert len(report["singular_values"]) == 16
    assert report["exact_max_abs_logit_diff_unclamped"] < 1e-3
    assert report["exact_noise_l2_per_image"] > 1.0
    assert 0 <= report["random_same_norm"]["agreement"] <= 1
    assert report["anf_noise"]["l2"] == pytest.approx(report["random_same_norm"]["l2"], rel=1e-4)
    assert (record_file.parent / "nullspace.png").stat().st_size > 0
    assert "| ANF (synthesised) |" in (record_file.parent / "nullspace.md").read_text()


def test_nullspace_analysis_of_an_existing_weights_file(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`robust-vit validate` with analysis/nullspace.yaml analyses a weights file once."""
    weights = tmp_path / "erm.safetensors"
    fit(
        [
            "--config",
            str(EXPERIMENTS / "method" / "erm.yaml"),
            *tiny_overrides(fmnist_dir),
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.max_epochs=1",
            "--name=erm",
            "--trainer.callbacks+=callbacks.ExportWeights",
            f"--trainer.callbacks.path={weights}",
        ],
        tmp_path,
        monkeypatch,
    )
    main(
        [
            "validate",
            *CPU_BASE,
            "--config",
            str(EXPERIMENTS / "analysis" / "nullspace.yaml"),
            *tiny_overrides(fmnist_dir),
            f"--model.weights={weights}",
            "--name=analysis",
            "--trainer.callbacks.num_images=32",
            "--trainer.callbacks.max_steps=5",
        ]
    )
    (record_file,) = (tmp_path / "runs" / "analysis").rglob("results.json")
    report = json.loads(record_file.read_text())["nullspace"]
    assert report["num_images"] == 32 and report["nullspace_dim"] == 64 - 16
    assert report["exact_max_abs_logit_diff_unclamped"] < 1e-3
    assert report["anf_noise"]["l2"] == pytest.approx(report["random_same_norm"]["l2"], rel=1e-4)
    assert (record_file.parent / "nullspace.md").is_file()
    assert (record_file.parent / "nullspace.png").is_file()


def test_record_lists_each_round_in_token_units(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(
        [
            "--config",
            str(EXPERIMENTS / "method" / "anf.yaml"),
            *tiny_overrides(fmnist_dir),
            *SHORT,
            f"--{METHOD}.rounds=2",
            f"--{METHOD}.steps_per_round=2",
            f"--{METHOD}.noise_units=token_rms",
            f"--{METHOD}.init_lim=3.0",
            "--trainer.max_epochs=2",
            "--name=units",
        ],
        tmp_path,
        monkeypatch,
    )
    (path,) = (tmp_path / "runs" / "units").rglob("results.json")
    summary = json.loads(path.read_text())["fit"]["method"]
    assert summary["noise_units"] == "token_rms"
    rounds = summary["rounds"]
    assert [(r["round"], r["global_step"]) for r in rounds] == [(0, 0), (1, 2)]
    for entry in rounds:
        assert entry["token_rms"] > 0
        assert entry["synth_init_range"] == pytest.approx(3.0 * entry["token_rms"], rel=1e-6)
        assert 0 <= entry["synth_steps"] <= 3 and entry["synth_reached"] in (0.0, 1.0)
    assert summary["reach_rate"] == sum(r["synth_reached"] for r in rounds) / 2
