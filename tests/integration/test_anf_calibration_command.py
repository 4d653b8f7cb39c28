"""benchmarks/anf_calibration.py on a tiny weights file written here (Fashion-MNIST slice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import anf_calibration
from robust_vit.models import save_vit_weights
from tests.integration.test_anf_nullspace_size_command import META, tiny_vit


def test_every_setting_reports_its_reach_over_its_rounds(
    tmp_path: Path, fmnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = save_vit_weights(tiny_vit(0), tmp_path / "probe.safetensors", META)
    out = tmp_path / "out"
    argv = [
        f"--weights={weights}",
        f"--data-dir={fmnist_dir}",
        "--init-lims", "0.01", "50",
        "--lrs", "0.1",
        "--budget=3",
        "--rounds=2",
        "--batch-size=8",
        "--timing-repeats=1",
        f"--out={out}",
    ]  # fmt: skip
    assert anf_calibration.main(argv) == 0
    report = json.loads((out / "anf_calibration.json").read_text())
    small, large = report["settings"]
    assert small["reach_rate"] == 1.0 and small["median_steps_to_reach"] == 0  # tiny noise passes
    assert large["mean_norm_token_units"] > 100 * small["mean_norm_token_units"]
    for setting in report["settings"]:
        assert len(setting["rounds"]) == 2
        reached = sum(r["reached"] for r in setting["rounds"])
        assert setting["reach_rate"] == reached / 2
        assert all(r["steps"] <= 3 for r in setting["rounds"])
    assert report["times"]["erm_step"] > 0 and report["times"]["synthesis_update"] > 0
    assert "reach" in capsys.readouterr().out


def test_the_start_fit_of_each_setting_reaches_the_search(tmp_path: Path, fmnist_dir: Path) -> None:
    weights = save_vit_weights(tiny_vit(0), tmp_path / "probe.safetensors", META)
    out = tmp_path / "out"
    argv = [
        f"--weights={weights}",
        f"--data-dir={fmnist_dir}",
        "--init-lims", "50",
        "--lrs", "0.1",
        "--start-criteria", "none", "0.01",
        "--budget=1",
        "--rounds=1",
        "--batch-size=8",
        "--timing-repeats=1",
        f"--out={out}",
    ]  # fmt: skip
    assert anf_calibration.main(argv) == 0
    as_given, fitted = json.loads((out / "anf_calibration.json").read_text())["settings"]
    assert as_given["start_criterion"] is None and as_given["mean_start_lim"] == 50
    assert as_given["mean_initial_criterion"] > 0.01  # a start this large moves the model
    assert fitted["start_criterion"] == 0.01 and fitted["mean_start_lim"] < 50
    assert fitted["mean_initial_criterion"] <= 0.01 or fitted["mean_start_lim"] == 50 / 2**8


def test_a_headless_file_is_refused(tmp_path: Path, fmnist_dir: Path) -> None:
    meta = {**META, "num_classes": 0}
    vit = tiny_vit(0)
    vit.reset_classifier(0)
    weights = save_vit_weights(vit, tmp_path / "headless.safetensors", meta)
    argv = [f"--weights={weights}", f"--data-dir={fmnist_dir}", f"--out={tmp_path}"]
    assert anf_calibration.main(argv) == 2
