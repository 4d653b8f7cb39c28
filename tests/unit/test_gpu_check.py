"""The GPU check's --tiny CPU run: every code path, and what its report must hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check_report import Report

KINDS = ("ERM", "PGD-10-AT", "ANF", "ANF synthesis update", "SAFER")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    """One --tiny run with a made-up CPU peak (so that MFU and its target are computed)."""
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.md"
    threads = torch.get_num_threads()
    try:
        report = gpu_check.main(["--tiny", "--peak_tflops", "0.01", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the check runs on one thread; later tests keep theirs
    return report, out


def test_every_step_kind_is_timed_counted_and_rated(tiny: tuple[Report, Path]) -> None:
    report, _ = tiny
    steps = {row.kind: row for row in report.steps}
    assert tuple(steps) == KINDS
    for row in steps.values():
        assert row.seconds > 0 and row.images_per_s > 0 and row.flops > 0
        assert row.mfu == pytest.approx(row.flops / row.seconds / 0.01e12)
        assert row.peak_gib is None  # the CPU has no allocator peak to report
    # ANF trains on clean and noisy inputs: two passes of the same model, noise adds no product.
    assert steps["ANF"].flops == 2 * steps["ERM"].flops
    # PGD-AT and SAFER each make PGD-10 examples: far more work than a clean step.
    assert steps["PGD-10-AT"].flops > 6 * steps["ERM"].flops
    assert steps["SAFER"].flops > 6 * steps["ERM"].flops


def test_pgd_throughput_compares_ours_with_torchattacks(tiny: tuple[Report, Path]) -> None:
    report, _ = tiny
    names = [t.attack for t in report.throughput]
    assert names == ["ours, early exit", "ours, all 20 steps", "torchattacks.PGD"]
    for t in report.throughput:
        assert t.seconds > 0 and t.examples > 0 and 0 <= t.robust <= t.examples


def test_bf16_and_fp32_attacks_are_compared_at_every_radius(tiny: tuple[Report, Path]) -> None:
    report, _ = tiny
    seen = {(p.attack, p.eps) for p in report.precision}
    assert seen == {(a, eps) for a in ("pgd20_linf", "fgsm_linf") for eps in report.setup.radii}
    for p in report.precision:
        assert 0 < p.examples <= report.setup.eval_batch
        assert all(0 <= n <= p.examples for n in (p.fp32, p.bf16, p.bf16_scored_fp32))
    # The largest radius of the tiny run breaks a random model on more examples than the smallest.
    pgd = sorted((p.eps, p.fp32) for p in report.precision if p.attack == "pgd20_linf")
    assert pgd[-1][1] < pgd[0][1]


def test_targets_are_evaluated_and_written(tiny: tuple[Report, Path]) -> None:
    report, out = tiny
    steps = {row.kind: row for row in report.steps}
    mfu, ratio = report.targets
    assert mfu.value == steps["ERM"].mfu and mfu.met == (mfu.value >= 0.40)
    assert ratio.value == pytest.approx(steps["SAFER"].seconds / steps["PGD-10-AT"].seconds)
    assert ratio.met == (ratio.value <= 1.10)
    page = out.read_text()
    for heading in (
        "### Training steps",
        "### PGD-20 evaluation",
        "### Attacks under bf16",
        "### Targets",
    ):
        assert heading in page
    record = json.loads(out.with_suffix(".json").read_text())
    assert [row["kind"] for row in record["steps"]] == list(KINDS)
    assert 0 < record["wall_s"] < 60


def test_no_peak_means_no_mfu() -> None:
    assert gpu_check.peak_flops("cpu", None) is None
    assert gpu_check.peak_flops("cpu", 2.0) == 2e12


@pytest.mark.parametrize(
    "argv", [["--tiny", "--peak_tflops", "0"], ["--tiny", "--batch_size", "0"]]
)
def test_bad_options_fail_before_any_compute(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(argv)
    assert exit_info.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_the_gpu_run_needs_a_gpu() -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main([])
    assert exit_info.value.code == 2
