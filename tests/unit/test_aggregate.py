from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from application.aggregate import delta_table, group_by_seed, mean_interval, mean_result, seed_of
from application.cli import main


def test_seed_folders_define_groups() -> None:
    assert seed_of(Path("runs/anf/erm/seed2/version_0")) == ("runs/anf/erm", 2)
    assert seed_of(Path("runs/finetune/version_0")) is None


def test_interval_shrinks_with_agreeing_seeds() -> None:
    mean, wide = mean_interval([0.80, 0.90, 0.85])
    _, narrow = mean_interval([0.849, 0.851, 0.850])
    assert mean == pytest.approx(0.85) and narrow < wide
    assert math.isnan(mean_interval([0.5])[1])


def test_deltas_are_paired_by_seed() -> None:
    metrics = {
        "runs/s/erm/seed0/v": {"test/acc": 0.80},
        "runs/s/erm/seed1/v": {"test/acc": 0.90},
        "runs/s/anf/seed0/v": {"test/acc": 0.81},
        "runs/s/anf/seed1/v": {"test/acc": 0.91},
    }
    table = delta_table(group_by_seed(metrics), "erm", ["test/acc"])
    # unpaired, the seeds' spread (0.1) would dominate; paired, every difference is 0.01
    assert "| runs/s/anf | 2 | 0.0100 ± 0.0000 |" in table


def test_report_groups_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for method, accs in {"erm": [0.8, 0.9], "anf": [0.85, 0.95]}.items():
        for seed, acc in enumerate(accs):
            run = tmp_path / method / f"seed{seed}" / "version_0"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"test": {"metrics": {"test/acc": acc}}}))
    main(["report", str(tmp_path), "--group", "--baseline", "erm", "--plots", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert "group minus erm" in out and "0.0500 ± 0.0000" in out
    assert (tmp_path / "p" / "groups.png").stat().st_size > 0


def test_mean_result_averages_every_accuracy_and_keeps_the_layout() -> None:
    def result(clean: float, pgd: float) -> dict:
        return {"clean": {"acc": clean}, "n": 100, "attacks": {"pgd": {"linf@0.1": {"acc": pgd}}}}

    mean = mean_result([result(0.9, 0.2), result(0.7, 0.4)])
    assert mean["clean"]["acc"] == pytest.approx(0.8)
    assert mean["attacks"]["pgd"]["linf@0.1"]["acc"] == pytest.approx(0.3)
    assert mean["n"] == 100
