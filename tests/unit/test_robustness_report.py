"""``robust-vit report`` on records with adversarial and corruption sections: tables and plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from application.cli import main
from callbacks.evaluation import proportion
from robust_vit.corruptions import alexnet_reference, corruption_metrics


def record() -> dict:
    adversarial = {
        "n": 100,
        "seed": 0,
        "clean": proportion(80, 100),
        "attacks": {
            "fgsm_linf": {"linf@0.01": proportion(60, 100), "linf@0.03": proportion(40, 100)},
            "pgd10_linf": {"linf@0.01": proportion(50, 100), "linf@0.03": proportion(20, 100)},
        },
        "worst_case": {"linf@0.01": proportion(45, 100), "linf@0.03": proportion(15, 100)},
    }
    accuracy = {
        c: {str(s): proportion(70 - 10 * s, 100) for s in range(1, 6)} for c in ("fog", "contrast")
    }
    corruptions = {
        "n": 100,
        "seed": 0,
        "severities": [1, 2, 3, 4, 5],
        "clean": proportion(80, 100),
        "accuracy": accuracy,
    }
    values = {c: {s: v["acc"] for s, v in by.items()} for c, by in accuracy.items()}
    corruptions.update(corruption_metrics(values, 0.8, alexnet_reference()))
    return {
        "test": {"metrics": {"test/acc": 0.8}},
        "adversarial": {"test": adversarial},
        "corruptions": {"test": corruptions},
    }


def test_report_prints_robustness_tables_and_writes_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "a" / "version_0"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(record()))
    main(["report", str(tmp_path / "runs"), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert "| worst case | 45.0 [" in out and "| pgd10_linf | 50.0 [" in out
    assert "| fog |" in out and "mCE" in out
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert len(plots) == 2 and all((tmp_path / "plots" / p).stat().st_size > 0 for p in plots)
