"""The evaluation YAMLs through the real CLI: records, tables, and the inference-mode guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from application.cli import main
from tests.conftest import EXPERIMENTS, TINY_MODEL

EVAL = EXPERIMENTS / "eval"


def base_args(data_dir: Path, name: str) -> list[str]:
    return [
        "--config",
        str(EXPERIMENTS / "base.yaml"),
        "--config",
        str(EXPERIMENTS / "data" / "fashion_mnist.yaml"),
        "--config",
        str(EXPERIMENTS / "model" / "vit_cpu.yaml"),
        f"--model.model_kwargs={TINY_MODEL}",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.batch_size=50",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--name={name}",
    ]


def test_cpu_suite_writes_the_robustness_record(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "test",
            *base_args(fmnist_dir, "adv"),
            "--config",
            str(EVAL / "cpu.yaml"),
            # the last callback of cpu.yaml is CorruptionEval: keep its rendering small here
            "--trainer.callbacks.init_args.num_examples=10",
            "--trainer.callbacks.init_args.corruptions=[contrast, pixelate]",
        ]
    )
    (path,) = (tmp_path / "runs" / "adv").rglob("results.json")
    record = json.loads(path.read_text())
    adv = record["adversarial"]["test"]
    assert adv["n"] == 200 and adv["seed"] == 0
    assert adv["clean"]["acc"] == pytest.approx(record["test"]["metrics"]["test/acc"], abs=1e-6)
    for threat, worst in adv["worst_case"].items():
        attacks = [by_threat[threat]["acc"] for by_threat in adv["attacks"].values()]
        assert worst["acc"] <= min(attacks) <= max(attacks) <= adv["clean"]["acc"]
        assert worst["ci"][0] <= worst["acc"] <= worst["ci"][1]
    sanity = adv["sanity"]
    assert sanity["randomized_forward"] == {"examples": 0, "n": 200}
    assert 0 <= sanity["zero_input_gradient"]["examples"] <= 200
    assert set(sanity["beaten_by_fgsm"]) == set(adv["attacks"]) - {"fgsm_linf"}
    assert (path.parent / "adversarial_test.md").read_text().startswith("| accuracy")
    assert "Gradient-masking checks" in (path.parent / "adversarial_test.md").read_text()
    assert any(k.startswith("test/adversarial/worst_case@") for k in record["test"]["metrics"])
    corr = record["corruptions"]["test"]
    assert corr["n"] == 10 and set(corr["accuracy"]) == {"contrast", "pixelate"}
    assert all(len(by_sev) == 5 for by_sev in corr["accuracy"].values())


def test_inference_mode_is_refused_before_compute(
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "test",
                *base_args(fmnist_dir, "guard"),
                "--config",
                str(EVAL / "cpu.yaml"),
                "--trainer.inference_mode=true",
            ]
        )
    assert exit_info.value.code == 2
    assert "trainer.inference_mode" in capsys.readouterr().err


def test_corruption_eval_renders_once_and_records(
    tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "few_corruptions.yaml"
    suite.write_text(
        "trainer:\n  inference_mode: false\n  callbacks+:\n"
        "    - class_path: callbacks.CorruptionEval\n      init_args:\n"
        "        corruptions: [gaussian_noise, contrast]\n        severities: [1, 5]\n"
        f"        num_examples: 20\n        cache_dir: {tmp_path / 'cache'}\n"
    )
    for name in ("c1", "c2"):
        main(["test", *base_args(fmnist_dir, name), "--config", str(suite)])
    (cache,) = (tmp_path / "cache").iterdir()
    assert sorted(p.name for p in cache.glob("*.npy")) == [
        "contrast.npy",
        "gaussian_noise.npy",
        "labels.npy",
    ]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").rglob("results.json"))]
    assert len(records) == 2
    first, second = (r["corruptions"]["test"] for r in records)
    assert first["accuracy"] == second["accuracy"] and first["n"] == 20
    assert set(first["accuracy"]) == {"gaussian_noise", "contrast"}
    assert 0 <= first["mean_accuracy"] <= 1


@pytest.mark.parametrize("suite", sorted(p.name for p in EVAL.glob("*.yaml")))
def test_every_eval_yaml_parses_and_composes(
    suite: str,
    tmp_path: Path,
    fmnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "test",
                *base_args(fmnist_dir, "parse"),
                "--config",
                str(EVAL / suite),
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "inference_mode: false" in out and "callbacks.ResultRecord" in out
