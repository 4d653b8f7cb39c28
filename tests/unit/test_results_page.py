"""The results page's robust-overfitting plot, from records written by the test itself."""

from __future__ import annotations

from pathlib import Path

from benchmarks import results_page
from robust_vit.records import write_json_atomic


def point(epoch: int, train: float, val: float) -> dict:
    return {"epoch": epoch, "train": {"robust": {"acc": train}}, "val": {"robust": {"acc": val}}}


def test_robust_overfitting_plot_per_group(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, shift in ((0, 0.0), (1, 0.02)):
        curve = [point(0, 0.3 + shift, 0.3), point(1, 0.6 + shift, 0.4), point(2, 0.9, 0.35)]
        write_json_atomic(runs / "stage1" / "pgd_at" / f"seed{seed}" / "version_0" /
                          "results.json", {"robust_validation": {"curve": curve}})
    write_json_atomic(runs / "anf" / "erm" / "seed0" / "results.json", {"fit": {}})
    links = results_page.robust_overfitting_plots(runs, tmp_path / "docs")
    assert links == ["![robust overfitting stage1_pgd_at]"
                     "(results/robust_overfitting_stage1_pgd_at.png)"]
    assert (tmp_path / "docs" / "results" / "robust_overfitting_stage1_pgd_at.png").stat().st_size
